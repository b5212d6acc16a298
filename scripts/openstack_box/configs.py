"""Config files of the box's services (rendered by ``box.py init``)."""

from __future__ import annotations

from dataclasses import dataclass

REGION = "wuhan"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "chutian-box-admin"  # noqa: S105 (a local test box)
ADMIN_PROJECT = "admin"
SERVICE_PROJECT = "service"
SERVICE_PASSWORD = "chutian-box-service"  # noqa: S105
HOST = "chutian-box"
CLOUD_NAME = "chutian-box"

# Fixed ports, all on 127.0.0.1 (15000+ to keep clear of real deployments).
PORTS = {
    "keystone": 15000,
    "glance-api": 15292,
    "neutron-api": 15696,
    "nova-api": 15774,
    "cinder-api": 15776,
    "placement": 15778,
}

DATABASES = (
    "chutian_box_keystone",
    "chutian_box_placement",
    "chutian_box_nova_api",
    "chutian_box_nova",
    "chutian_box_nova_cell0",
    "chutian_box_cinder",
    "chutian_box_glance",
    "chutian_box_neutron",
)

RABBIT_VHOST = "chutian-box"


def url(service: str) -> str:
    return f"http://127.0.0.1:{PORTS[service]}"


KEYSTONE_URL = url("keystone") + "/v3"

# (service type, service name, endpoint URL) registered in the catalog by init.
CATALOG = (
    ("compute", "nova", url("nova-api") + "/v2.1"),
    ("placement", "placement", url("placement")),
    ("block-storage", "cinder", url("cinder-api") + "/v3/%(project_id)s"),
    ("volumev3", "cinderv3", url("cinder-api") + "/v3/%(project_id)s"),
    ("image", "glance", url("glance-api")),
    ("network", "neutron", url("neutron-api")),
)

SERVICE_USERS = ("nova", "placement", "cinder", "glance", "neutron")


@dataclass(frozen=True)
class Settings:
    box: str  # OPENSTACK_BOX_DIR
    venv: str
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_user: str = "root"
    db_password: str = ""
    rabbit_host: str = "127.0.0.1"
    rabbit_port: int = 5672
    rabbit_user: str = "guest"
    rabbit_password: str = "guest"  # noqa: S105

    def db(self, name: str) -> str:
        auth = self.db_user + (f":{self.db_password}" if self.db_password else "")
        return f"mysql+pymysql://{auth}@{self.db_host}:{self.db_port}/{name}?charset=utf8"

    @property
    def transport_url(self) -> str:
        return (
            f"rabbit://{self.rabbit_user}:{self.rabbit_password}@{self.rabbit_host}:{self.rabbit_port}/{RABBIT_VHOST}"
        )

    def etc(self, service: str) -> str:
        return f"{self.box}/etc/{service}"

    def state(self, service: str) -> str:
        return f"{self.box}/state/{service}"


def _authtoken(user: str) -> str:
    return f"""
[keystone_authtoken]
www_authenticate_uri = {KEYSTONE_URL}
auth_url = {KEYSTONE_URL}
auth_type = password
username = {user}
password = {SERVICE_PASSWORD}
project_name = {SERVICE_PROJECT}
user_domain_name = Default
project_domain_name = Default
region_name = {REGION}
service_token_roles_required = true
"""


def _client(section: str, user: str, region_key: str = "region_name") -> str:
    return f"""
[{section}]
auth_type = password
auth_url = {KEYSTONE_URL}
username = {user}
password = {SERVICE_PASSWORD}
project_name = {SERVICE_PROJECT}
user_domain_name = Default
project_domain_name = Default
{region_key} = {REGION}
valid_interfaces = public
"""


def keystone_conf(s: Settings) -> str:
    etc = s.etc("keystone")
    return f"""[DEFAULT]
debug = false

[database]
connection = {s.db("chutian_box_keystone")}

[token]
provider = fernet
expiration = 86400

[fernet_tokens]
key_repository = {etc}/fernet-keys

[fernet_receipts]
key_repository = {etc}/fernet-keys

[credential]
key_repository = {etc}/credential-keys

[identity]
password_hash_algorithm = bcrypt
# The box trades hash strength for speed: bcrypt's minimum (default 12 costs
# ~0.5-1 s a user on 2 cores).
password_hash_rounds = 4

[cache]
enabled = false

[oslo_messaging_notifications]
driver = noop
"""


def placement_conf(s: Settings) -> str:
    return f"""[DEFAULT]
debug = false

[api]
auth_strategy = keystone

[placement_database]
connection = {s.db("chutian_box_placement")}
{_authtoken("placement")}"""


_CINDER_CLIENT = _client("cinder", "nova", "os_region_name")


def nova_conf(s: Settings) -> str:
    state = s.state("nova")
    return f"""[DEFAULT]
debug = false
host = {HOST}
my_ip = 127.0.0.1
state_path = {state}
instances_path = {state}/instances
transport_url = {s.transport_url}
compute_driver = fake.FakeDriverWithoutFakeNodes
# The fake host has 8 vCPU / 8000 MB / 500 GB: overcommit heavily so bulk
# boots of tiny flavors fit.
cpu_allocation_ratio = 64.0
ram_allocation_ratio = 16.0
disk_allocation_ratio = 16.0
initial_cpu_allocation_ratio = 64.0
initial_ram_allocation_ratio = 16.0
initial_disk_allocation_ratio = 16.0
reserved_host_memory_mb = 0
reserved_host_disk_mb = 0
osapi_compute_workers = 1
metadata_workers = 1
report_interval = 5
service_down_time = 60
heal_instance_info_cache_interval = -1
instance_usage_audit = false
max_concurrent_builds = 20

[api]
auth_strategy = keystone

[api_database]
connection = {s.db("chutian_box_nova_api")}

[database]
connection = {s.db("chutian_box_nova")}

[conductor]
workers = 1

[scheduler]
workers = 1
discover_hosts_in_cells_interval = 5

[filter_scheduler]
host_subset_size = 1

[oslo_concurrency]
lock_path = {state}/lock

[oslo_messaging_notifications]
driver = noop

[notifications]
notification_format = unversioned

[vnc]
enabled = false

[spice]
enabled = false

[wsgi]
api_paste_config = {s.etc("nova")}/api-paste.ini

[privsep]
helper_command = {s.venv}/bin/privsep-helper --config-file {s.etc("nova")}/nova.conf
{_authtoken("nova")}{_client("placement", "nova")}{_client("neutron", "nova")}{_CINDER_CLIENT}
[glance]
region_name = {REGION}
valid_interfaces = public

[service_user]
send_service_user_token = false
"""


def cinder_conf(s: Settings) -> str:
    state = s.state("cinder")
    conf = f"{s.etc('cinder')}/cinder.conf"
    helper = f"{s.venv}/bin/privsep-helper --config-file {conf}"
    return f"""[DEFAULT]
debug = false
host = {HOST}
my_ip = 127.0.0.1
state_path = {state}
transport_url = {s.transport_url}
auth_strategy = keystone
api_paste_config = {s.etc("cinder")}/api-paste.ini
osapi_volume_workers = 1
enabled_backends = box
default_volume_type = __DEFAULT__
report_interval = 5
service_down_time = 60
backup_driver = cinder.backup.drivers.posix.PosixBackupDriver
backup_posix_path = {state}/backups
backup_workers = 1
volume_clear = none
rootwrap_config = {s.etc("cinder")}/rootwrap.conf

[box]
volume_driver = box_cinder_driver.SparseFileDriver
volume_backend_name = box
box_volumes_dir = {state}/volumes

[database]
connection = {s.db("chutian_box_cinder")}

[oslo_concurrency]
lock_path = {state}/lock

[coordination]
backend_url = file://{state}/coordination

[oslo_messaging_notifications]
driver = noop

# No sudo here (and we are root): run privsep's helper directly.
[privsep]
helper_command = {helper}

[privsep_osbrick]
helper_command = {helper}

[cinder_sys_admin]
helper_command = {helper}
{_authtoken("cinder")}{_client("nova", "cinder")}
[service_user]
send_service_user_token = false
"""


CINDER_API_PASTE = """# Written by scripts/openstack-box (the cinder wheel may ship none).
[composite:osapi_volume]
use = call:cinder.api:root_app_factory
/: apiversions
/healthcheck: healthcheck
/v3: openstack_volume_api_v3

[composite:openstack_volume_api_v3]
use = call:cinder.api.middleware.auth:pipeline_factory
noauth = request_id cors http_proxy_to_wsgi faultwrap sizelimit osprofiler noauth apiv3
keystone = request_id cors http_proxy_to_wsgi faultwrap sizelimit osprofiler authtoken keystonecontext apiv3
keystone_nolimit = request_id cors http_proxy_to_wsgi faultwrap sizelimit osprofiler authtoken
    keystonecontext apiv3

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory

[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = cinder

[filter:faultwrap]
paste.filter_factory = cinder.api.middleware.fault:FaultWrapper.factory

[filter:osprofiler]
paste.filter_factory = osprofiler.web:WsgiMiddleware.factory

[filter:noauth]
paste.filter_factory = cinder.api.middleware.auth:NoAuthMiddleware.factory

[filter:sizelimit]
paste.filter_factory = oslo_middleware.sizelimit:RequestBodySizeLimiter.factory

[app:apiv3]
paste.app_factory = cinder.api.v3.router:APIRouter.factory

[pipeline:apiversions]
pipeline = request_id cors http_proxy_to_wsgi faultwrap osvolumeversionapp

[app:osvolumeversionapp]
paste.app_factory = cinder.api.versions:Versions.factory

[pipeline:healthcheck]
pipeline = request_id healthcheckapp

[app:healthcheckapp]
paste.app_factory = oslo_middleware:Healthcheck.app_factory
backends = disable_by_file
disable_by_file_path = /nonexistent/chutian-box/healthcheck_disable

[filter:keystonecontext]
paste.filter_factory = cinder.api.middleware.auth:CinderKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:request_id]
paste.filter_factory = cinder.api.middleware.request_id:RequestId.factory
"""


def glance_conf(s: Settings) -> str:
    state = s.state("glance")
    return f"""[DEFAULT]
debug = false
bind_host = 127.0.0.1
bind_port = {PORTS["glance-api"]}
workers = 1
enabled_backends = fs:file
worker_self_reference_url = {url("glance-api")}
show_image_direct_url = false

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {state}/images/

[os_glance_staging_store]
filesystem_store_datadir = {state}/staging/

[os_glance_tasks_store]
filesystem_store_datadir = {state}/tasks/

[database]
connection = {s.db("chutian_box_glance")}

[paste_deploy]
flavor = keystone

[oslo_concurrency]
lock_path = {state}/lock

[oslo_messaging_notifications]
driver = noop
{_authtoken("glance")}"""


def neutron_conf(s: Settings) -> str:
    state = s.state("neutron")
    return f"""[DEFAULT]
debug = false
host = {HOST}
state_path = {state}
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = {s.transport_url}
api_paste_config = {s.etc("neutron")}/api-paste.ini
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
allow_overlapping_ips = true
# No agents and no nova callbacks: the box's Neutron is API-only (ports never bind).
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false

[database]
connection = {s.db("chutian_box_neutron")}

[oslo_concurrency]
lock_path = {state}/lock

[oslo_messaging_notifications]
driver = noop

{_authtoken("neutron")}"""


ML2_CONF = """[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers =
extension_drivers = port_security

[ml2_type_flat]
flat_networks = *

[ml2_type_vlan]
network_vlan_ranges = egov:100:199

[ml2_type_vxlan]
vni_ranges = 1:10000
"""


def clouds_yaml() -> str:
    return f"""# The local OpenStack box (scripts/openstack-box): admin of region {REGION}.
clouds:
  {CLOUD_NAME}:
    auth:
      auth_url: {KEYSTONE_URL}
      username: {ADMIN_USER}
      password: {ADMIN_PASSWORD}
      project_name: {ADMIN_PROJECT}
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    identity_api_version: 3
    interface: public
"""
