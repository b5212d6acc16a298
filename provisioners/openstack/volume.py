"""Volumes found-or-created by a metadata tag, and their backups (named by their tag)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import openstack.exceptions as sdk

from provisioners.base import BackupRef, ProjectRef, VolumeRef, VolumeSpec
from provisioners.errors import BackendNotFound, ResourceConflict
from provisioners.openstack.common import OpenStackBase
from provisioners.openstack.common import get_or_none as _get_or_none
from provisioners.openstack.connection import Connection

VOLUME_READY = frozenset({"available", "in-use"})
VOLUME_BUSY = frozenset(
    {"creating", "backing-up", "restoring-backup", "downloading", "uploading", "attaching", "detaching", "extending"}
)
BACKUP_BUSY = frozenset({"creating", "restoring"})
MESSAGES_MICROVERSION = "3.3"


def _status(resource: Any | None) -> str | None:
    return None if resource is None else resource.status


class VolumeOps(OpenStackBase):
    def _cinder_fault(self, conn: Connection, resource_id: str) -> str:
        """Cinder keeps the why of an error in its user messages API, not on the volume."""
        response = conn.block_storage.get(f"/messages?resource_uuid={resource_id}", microversion=MESSAGES_MICROVERSION)
        sdk.raise_from_response(response)
        messages = response.json().get("messages", [])
        return "; ".join(f"{m.get('event_id')}: {m.get('user_message')}" for m in messages) or "no message recorded"

    def _find_volume(self, conn: Connection, tag: str, *, project_id: str | None = None) -> Any | None:
        query: dict[str, Any] = {"details": True}
        if project_id is not None:
            query.update(all_projects=True, project_id=project_id)
        matches = [
            v for v in conn.block_storage.volumes(**query) if (v.metadata or {}).get(self.settings.tag_key) == tag
        ]
        return min(matches, key=lambda v: (v.created_at or "", v.id)) if matches else None

    def _find_backup(self, conn: Connection, tag: str, *, project_id: str | None = None) -> Any | None:
        """By name: Cinder refuses a `name` filter on backups, so filter here."""
        query: dict[str, Any] = {"details": True}
        if project_id is not None:
            query.update(all_projects=True, project_id=project_id)
        matches = [
            b
            for b in conn.block_storage.backups(**query)
            if b.name == tag and (project_id is None or b.project_id in (None, project_id))
        ]
        return min(matches, key=lambda b: (b.created_at or "", b.id)) if matches else None

    def _volume_ref(self, volume: Any, tag: str) -> VolumeRef:
        return VolumeRef(
            id=volume.id, tag=tag, project_id=volume.project_id, status=volume.status, size_gb=int(volume.size)
        )

    def _backup_ref(self, backup: Any, tag: str, project: ProjectRef) -> BackupRef:
        return BackupRef(
            id=backup.id,
            tag=tag,
            volume_id=backup.volume_id,
            project_id=backup.project_id or project.id,
            status=backup.status,
            size_gb=int(backup.size or 0),
        )

    def _wait_volume(self, conn: Connection, volume: Any, what: str, *, ready: frozenset[str]) -> Any:
        return self.wait(
            what,
            lambda: conn.block_storage.get_volume(volume.id),
            status=_status,
            done=lambda v: v is not None and v.status in ready,
            failed=lambda v: self._cinder_fault(conn, v.id) if v.status == "error" else None,
            timeout_s=self.settings.volume_timeout_s,
        )

    def ensure_volume(self, project: ProjectRef, spec: VolumeSpec) -> VolumeRef:
        """Find-or-create by `chutian_tag` metadata, then wait until available."""
        if spec.size_gb < 1:
            raise self.invalid(f"volume size must be ≥ 1 GB, got {spec.size_gb}")
        with self.errors():
            conn = self.scoped(project)
            volume = self._find_volume(conn, spec.tag)
            if volume is None:
                volume = conn.block_storage.create_volume(
                    name=spec.name or spec.tag,
                    size=spec.size_gb,
                    volume_type=spec.volume_type,
                    metadata={self.settings.tag_key: spec.tag},
                )
            elif int(volume.size) != spec.size_gb:
                raise ResourceConflict(
                    f"volume {spec.tag!r} exists with {volume.size} GB, not {spec.size_gb} GB", backend=self.backend
                )
            volume = self._wait_volume(conn, volume, f"volume {spec.tag!r} ({volume.id})", ready=VOLUME_READY)
            return self._volume_ref(volume, spec.tag)

    def delete_volume(self, project: ProjectRef, tag: str) -> bool:
        """As admin, like every delete (see `delete_server`)."""
        with self.errors():
            volume = self._find_volume(self.conn, tag, project_id=project.id)
            if volume is None:
                return False
            self._delete_volumes(self.conn, [volume])
            return True

    def _delete_volumes(self, conn: Connection, volumes: Sequence[Any]) -> None:
        """Wait out transitional states first: Cinder refuses to delete a volume that is busy."""
        for volume in volumes:
            settled = self.wait(
                f"volume {volume.id} to settle before deletion",
                partial(_get_or_none, conn.block_storage.get_volume, volume.id),
                status=_status,
                done=lambda v: v is None or v.status not in VOLUME_BUSY,
                timeout_s=self.settings.volume_timeout_s,
            )
            if settled is not None and settled.status != "deleting":
                conn.block_storage.delete_volume(volume, ignore_missing=True, cascade=True)
        for volume in volumes:
            self.wait(
                f"deletion of volume {volume.id}",
                partial(_get_or_none, conn.block_storage.get_volume, volume.id),
                status=_status,
                done=lambda v: v is None,
                failed=lambda v: "error_deleting" if v.status == "error_deleting" else None,
                timeout_s=self.settings.delete_timeout_s,
            )

    def ensure_volume_backup(self, project: ProjectRef, volume_tag: str, backup_tag: str) -> BackupRef:
        """Find-or-create the backup named `backup_tag` of the volume tagged `volume_tag`; wait until available."""
        with self.errors():
            conn = self.scoped(project)
            backup = self._find_backup(conn, backup_tag)
            if backup is None:
                volume = self._find_volume(conn, volume_tag)
                if volume is None:
                    raise BackendNotFound(
                        f"no volume tagged {volume_tag!r} in project {project.name}", backend=self.backend
                    )
                volume = self._wait_volume(conn, volume, f"volume {volume_tag!r} before backup", ready=VOLUME_READY)
                backup = conn.block_storage.create_backup(
                    volume_id=volume.id,
                    name=backup_tag,
                    description=f"chutian: backup of {volume_tag}",
                    force=volume.status == "in-use",
                )
            backup = self.wait(
                f"backup {backup_tag!r} ({backup.id})",
                lambda: conn.block_storage.get_backup(backup.id),
                status=_status,
                done=lambda b: b is not None and b.status == "available",
                failed=lambda b: (b.fail_reason or "backup failed") if b.status == "error" else None,
                timeout_s=self.settings.backup_timeout_s,
            )
            return self._backup_ref(backup, backup_tag, project)

    def delete_volume_backup(self, project: ProjectRef, backup_tag: str) -> bool:
        with self.errors():
            backup = self._find_backup(self.conn, backup_tag, project_id=project.id)
            if backup is None:
                return False
            self._delete_backups(self.conn, [backup])
            return True

    def _delete_backups(self, conn: Connection, backups: Sequence[Any]) -> None:
        for backup in backups:
            settled = self.wait(
                f"backup {backup.id} to settle before deletion",
                partial(_get_or_none, conn.block_storage.get_backup, backup.id),
                status=_status,
                done=lambda b: b is None or b.status not in BACKUP_BUSY,
                timeout_s=self.settings.backup_timeout_s,
            )
            if settled is not None and settled.status != "deleting":
                conn.block_storage.delete_backup(backup, ignore_missing=True)
        for backup in backups:
            self.wait(
                f"deletion of backup {backup.id}",
                partial(_get_or_none, conn.block_storage.get_backup, backup.id),
                status=_status,
                done=lambda b: b is None,
                failed=lambda b: "error_deleting" if b.status == "error_deleting" else None,
                timeout_s=self.settings.backup_timeout_s,
            )
