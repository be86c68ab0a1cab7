"""Container images of Donjon built without a base image or a container runtime.

``scripts/build-image`` drives it: a root filesystem from Debian's own packages
(:mod:`.rootfs`), Donjon and its dependencies from wheels (:mod:`.pyenv`), the
image made with ``buildah`` from scratch (:mod:`.buildah`), and the OCI archive
read back and checked blob by blob (:mod:`.ociarchive`). Nothing here runs in a
Keep or a Steward; it imports no other Donjon subpackage.
"""

from __future__ import annotations

from collections.abc import Callable

#: reports one line of progress ("downloading 15 Debian packages")
Progress = Callable[[str], None]

#: the non-root user of both images; deploy/Containerfile and the Helm chart use the same
UID = 10001
GID = 10001
USER = "donjon"
#: where state (the Steward's CA and audit store, the Keep's platform state) lives: a volume
STATE_DIR = "/var/lib/donjon"
#: compiled-module and collateral caches: a volume
CACHE_DIR = "/var/cache/donjon"
#: the virtual environment holding Donjon (deploy/Containerfile's path too)
VENV = "/opt/donjon"
