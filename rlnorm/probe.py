"""``rlnorm.probe`` is :mod:`rlnorm.core.probe`, under the path it had before the package took its layout,
which models saved then refer to."""

import sys

from rlnorm.core import probe

sys.modules[__name__] = probe
