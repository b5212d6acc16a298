"""Process settings: one pydantic-settings class, built by a function, never at import time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "chutian"


class Settings(BaseSettings):
    """Everything that varies between deployments. Empty values mean "embedded default"."""

    model_config = SettingsConfigDict(env_prefix="CHUTIAN_", extra="ignore")

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Where embedded mode keeps its files")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite under data_dir")
    broker_url: str = Field(default="", description="Celery broker; empty = embedded SQLAlchemy transport")
    site_file: Path | None = Field(default=None, description="YAML site file; empty = the shipped default")
    secret_keys_file: Path | None = Field(default=None, description="Fernet keys, one per line, first encrypts")
    clouds_yaml: Path | None = Field(default=None, description="clouds.yaml for regions with `openstack_cloud`")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig for regions with `kube_context`")
    ansible_user: str = Field(default="chutian", description="SSH user the MLPS baseline logs in as on new VMs")
    ansible_ssh_key_file: Path | None = Field(
        default=None, description="private key (mode 0600) for that user; read at each run, never logged"
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # With several API replicas every one would serve the same DB-derived gauges (duplicate
    # series); the chart turns this off on the API and runs `chutian metrics` once instead.
    metrics_domain: bool = Field(default=True, description="Serve the DB-derived gauges on the metrics port")
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    heartbeat_max_age_s: float = Field(default=30.0, gt=0)
    demo_data: bool = True
    log_level: str = "INFO"
    page_size_max: int = Field(default=500, ge=1)
    token_default_ttl_days: int = Field(default=90, ge=1, le=3650)
    audit_verify_interval_s: float = Field(default=300.0, gt=0)
    catalogue_sync_interval_s: float = Field(default=300.0, gt=0, description="flavors and Glance images per region")
    # Events a unit could not chain itself (another integrator was at work) wait at most this long.
    audit_integrate_interval_s: float = Field(default=5.0, gt=0)
    reaper_interval_s: float = Field(default=15.0, gt=0)
    capacity_sync_interval_s: float = Field(default=300.0, gt=0)
    operation_lease_s: float = Field(default=60.0, ge=1, description="A claimed operation's lease")
    operation_resend_after_s: float = Field(default=30.0, ge=1, description="Re-send a queued, unclaimed job")
    simulated_boot_s: float = Field(default=0.0, ge=0, le=60, description="Simulated server build time")
    quota_metrics_depth: int = Field(
        default=1, ge=0, le=8, description="Tenant levels below the province in quota metrics"
    )
    # Remote backup (issue 9). Empty dr_store = a local directory under data_dir (embedded/demo:
    # no append-only protection). "swift:<container>" = restic's swift backend at the DR site with
    # the dr_swift_* credentials; cities then write through the append-only gateway dr_gateway_url.
    dr_store: str = Field(default="", description="'' (local dir) or swift:<container>")
    dr_swift_auth_url: str = ""
    dr_swift_user: str = ""
    dr_swift_key_file: Path | None = Field(default=None, description="DR-side Swift key, mode 0600")
    dr_gateway_url: str = Field(default="", description="rest:http://host:port/ of the append-only gateway")
    dr_gateway_user: str = ""
    dr_gateway_password_file: Path | None = Field(default=None, description="Gateway password, mode 0600")
    dr_restore_root: Path | None = Field(default=None, description="Tenants' restore areas; empty = data_dir")
    backup_tick_interval_s: float = Field(default=60.0, gt=0, description="The backup scheduler's beat")
    backup_jitter_s: float = Field(default=300.0, ge=0, description="Spread of scheduled runs' start")
    backup_lease_s: float = Field(default=60.0, ge=1, description="A running backup/drill's lease")
    backup_check_subset: str = Field(default="10%", description="restic check --read-data-subset after a run")
    # OIDC (optional): bearer JWTs from this issuer, keys from its JWKS, roles from claims.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    # [{"claim": "groups", "value": "wuhan-ops", "role": "operator", "tenant": "hubei.wuhan"}, ...]
    oidc_claim_mappings: list[dict[str, str]] = Field(default_factory=list)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'chutian.sqlite3'}"

    @property
    def embedded(self) -> bool:
        """Embedded mode: no external broker; serve supervises its own worker."""
        return not self.broker_url

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.sqlite3'}"

    @property
    def resolved_secret_keys_file(self) -> Path:
        return self.secret_keys_file or self.data_dir / "secret-keys"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
