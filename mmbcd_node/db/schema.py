"""Every model module, imported so that ``Base.metadata`` holds the whole schema.

Alembic's environment and the schema tests import this module; a new model module
is added here.
"""

from mmbcd_node.db import installation, models, ops_models, order_models, result_models
from mmbcd_node.db.models import Base

__all__ = ["Base", "installation", "models", "ops_models", "order_models", "result_models"]
