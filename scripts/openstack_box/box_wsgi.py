"""WSGI entry point for the box's API services, served by gunicorn.

gunicorn imports ``box_wsgi:application`` in its worker; CHUTIAN_BOX_SERVICE
names the service. The services parse ``sys.argv`` with oslo.config, which
would choke on gunicorn's own arguments and kill every worker, so ``sys.argv``
is reset before the service's application module is imported. The config
files are found through the services' own environment variables
(OS_<SERVICE>_CONFIG_DIR ...), set by scripts/openstack-box, except Cinder's,
which only reads ``--config-file``.
"""

import importlib
import os
import sys

_MODULES = {
    "keystone": "keystone.wsgi.api",
    "placement": "placement.wsgi.api",
    "nova-api": "nova.wsgi.osapi_compute",
    "cinder-api": "cinder.wsgi.api",
    "glance-api": "glance.wsgi.api",
    "neutron-api": "neutron.wsgi.api",
}

_SERVICE = os.environ["CHUTIAN_BOX_SERVICE"]
if _SERVICE == "cinder-api":
    sys.argv = [_SERVICE, "--config-file", os.environ["CHUTIAN_BOX_CINDER_CONF"]]
else:
    sys.argv = [_SERVICE]

application = importlib.import_module(_MODULES[_SERVICE]).application
