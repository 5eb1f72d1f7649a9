"""The self-contained run (`make run`): base settings; servers come from scripts/services.sh."""

from config.settings.base import *  # noqa: F403
