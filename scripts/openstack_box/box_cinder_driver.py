"""A Cinder volume driver for the box: volumes are sparse files on local disk.

The shipped fake/test drivers cannot be attached, so cinder-backup (which
attaches the source volume through os-brick) fails with them. This driver
hands out the ``local`` connection type (os-brick's LocalConnector): the
"device" is the file itself, which cinder-backup on the same host can read and
restore into. No root helper, no iSCSI, no LVM.

Loaded by cinder-volume through ``volume_driver =
box_cinder_driver.SparseFileDriver`` with the box's lib directory on
PYTHONPATH (scripts/openstack-box sets both).
"""

import os
import shutil

from cinder.volume import driver
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.StrOpt("box_volumes_dir", help="Directory holding the sparse volume files."),
    cfg.IntOpt("box_capacity_gb", default=10000, help="Capacity reported to the scheduler."),
]

cfg.CONF.register_opts(OPTS, group="backend_defaults")

_GIB = 1024**3


class SparseFileDriver(driver.VolumeDriver):
    VERSION = "1.0.0"
    CI_WIKI_NAME = "chutian-box"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(OPTS)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "box"

    # -- helpers -------------------------------------------------------
    def _dir(self):
        path = self.configuration.safe_get("box_volumes_dir")
        if not path:
            raise ValueError("box_volumes_dir is not set")
        return path

    def _path(self, name):
        return os.path.join(self._dir(), name)

    def local_path(self, volume):
        return self._path(volume.name)

    def _snapshot_path(self, snapshot):
        return self._path(snapshot.name)

    @staticmethod
    def _make_sparse(path, size_gb):
        with open(path, "ab") as handle:
            handle.truncate(int(size_gb) * _GIB)

    @staticmethod
    def _copy_sparse(src, dst, size_gb):
        # shutil.copyfile would fill the holes; copy with holes kept by
        # skipping all-zero blocks.
        block = 4 * 1024 * 1024
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            while True:
                data = fin.read(block)
                if not data:
                    break
                if data.count(0) == len(data):
                    fout.seek(len(data), os.SEEK_CUR)
                else:
                    fout.write(data)
            fout.truncate(max(int(size_gb) * _GIB, fout.tell()))

    # -- driver API ----------------------------------------------------
    def do_setup(self, context):
        os.makedirs(self._dir(), exist_ok=True)

    def check_for_setup_error(self):
        if not os.path.isdir(self._dir()):
            raise OSError(f"{self._dir()} is not a directory")

    def _update_volume_stats(self):
        used = 0
        for entry in os.scandir(self._dir()):
            if entry.is_file():
                used += entry.stat().st_blocks * 512
        total = self.configuration.safe_get("box_capacity_gb") or 10000
        self._stats = {
            "volume_backend_name": self.backend_name,
            "vendor_name": "Chutian",
            "driver_version": self.VERSION,
            "storage_protocol": "local",
            "total_capacity_gb": total,
            "free_capacity_gb": max(total - used // _GIB, 0),
            "reserved_percentage": 0,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "max_over_subscription_ratio": 20.0,
            "provisioned_capacity_gb": used // _GIB,
            "multiattach": False,
            "QoS_support": False,
            "online_extend_support": True,
        }

    def create_volume(self, volume):
        self._make_sparse(self.local_path(volume), volume.size)
        return {}

    def delete_volume(self, volume):
        path = self.local_path(volume)
        if os.path.exists(path):
            os.remove(path)

    def extend_volume(self, volume, new_size):
        self._make_sparse(self.local_path(volume), new_size)

    def create_snapshot(self, snapshot):
        self._copy_sparse(self.local_path(snapshot.volume), self._snapshot_path(snapshot), snapshot.volume_size)

    def delete_snapshot(self, snapshot):
        path = self._snapshot_path(snapshot)
        if os.path.exists(path):
            os.remove(path)

    def create_volume_from_snapshot(self, volume, snapshot):
        self._copy_sparse(self._snapshot_path(snapshot), self.local_path(volume), volume.size)
        return {}

    def create_cloned_volume(self, volume, src_vref):
        self._copy_sparse(self.local_path(src_vref), self.local_path(volume), volume.size)
        return {}

    def revert_to_snapshot(self, context, volume, snapshot):
        shutil.copyfile(self._snapshot_path(snapshot), self.local_path(volume))

    def ensure_export(self, context, volume):
        pass

    def create_export(self, context, volume, connector):
        pass

    def remove_export(self, context, volume):
        pass

    def initialize_connection(self, volume, connector, **kwargs):
        return {
            "driver_volume_type": "local",
            "data": {"device_path": self.local_path(volume), "volume_id": volume.id},
        }

    def terminate_connection(self, volume, connector, **kwargs):
        pass

    def initialize_connection_snapshot(self, snapshot, connector, **kwargs):
        return {
            "driver_volume_type": "local",
            "data": {"device_path": self._snapshot_path(snapshot)},
        }

    def terminate_connection_snapshot(self, snapshot, connector, **kwargs):
        pass

    def create_export_snapshot(self, context, snapshot, connector):
        pass

    def remove_export_snapshot(self, context, snapshot):
        pass
