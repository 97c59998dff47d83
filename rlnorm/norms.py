"""``rlnorm.norms`` is :mod:`rlnorm.core.norms`, under the path it had before the package took its layout,
which models saved then refer to."""

import sys

from rlnorm.core import norms

sys.modules[__name__] = norms
