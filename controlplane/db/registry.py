"""Imports every table module so `SQLModel.metadata` is complete (Alembic, tests)."""

from sqlmodel import SQLModel

from controlplane.audit import models as _audit  # noqa: F401
from controlplane.auth import models as _auth  # noqa: F401
from controlplane.backup import models as _backup  # noqa: F401
from controlplane.capacity import models as _capacity  # noqa: F401
from controlplane.catalogue import models as _catalogue  # noqa: F401
from controlplane.ledger import models as _ledger  # noqa: F401
from controlplane.operations import models as _operations  # noqa: F401
from controlplane.requests import models as _requests  # noqa: F401
from controlplane.system import models as _system  # noqa: F401
from controlplane.tenants import models as _tenants  # noqa: F401

metadata = SQLModel.metadata
