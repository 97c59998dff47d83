"""``rlnorm.policies`` is :mod:`rlnorm.core.policies`, under the path it had before the package took its layout,
which models saved then refer to."""

import sys

from rlnorm.core import policies

sys.modules[__name__] = policies
