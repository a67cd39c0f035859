"""The node image: built locally, without a registry, cached by a hash of its recipe.

Two layers. The *base* is a Debian root filesystem with python3, iptables,
iproute2, libfaketime, procps, openssh-server, sudo and fuse3 (the lazy disks
of a power loss): made with ``debootstrap`` and ``docker import`` (no registry
needed), or built ``FROM --base-image`` with apt where a registry is reachable.
The *node* layer adds the project's node code (the ``targets`` package, the
lazy disk daemon, and the first-party modules they import) and its Python
dependencies, unpacked from
wheels downloaded on the host, so nothing is installed from the network
inside the image. Each layer is tagged with a hash of what went into it and
rebuilt only when that changes.

What goes into the node layer is decided in :mod:`harness.backends.node_code`
(shared with the SSH backend, which uploads the same code and dependencies).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.backends.node_code import (CACHE_DIR, NODE_REQUIREMENTS, code_files, code_hash, digest, download_wheels,
                                        node_packages, unpack_wheels, wheel_dir)
from harness.errors import UserError
from targets.adapter import Target

BASE_REPO = "dynharness/base"
NODE_REPO = "dynharness/node"
LABEL = "dynharness"                       # every image/container/network the harness makes carries it
BASE_LABEL = f"{LABEL}.base"               # a node image's base recipe hash (which packages it has)
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
DEFAULT_PACKAGES = ("python3", "iptables", "iproute2", "libfaketime", "procps", "openssh-server", "sudo", "fuse3")
APP_DIR = "/opt/dynharness/app"
SITE_DIR = "/opt/dynharness/site"
ENTRYPOINT = "/opt/dynharness/bin/entrypoint"
SSH_USER = "dyn"                           # non-root user with passwordless sudo, for the SSH backend

# The container entrypoint. ``idle``: create the firewall chain the Docker backend's partitions use
# (hooked from INPUT and OUTPUT, so "-s A -d B" rules work on either end), make sure the libfaketime
# control file exists, and idle: the node itself is a daemon the backend starts with ``docker exec``
# (harness.backends.remote), so a crash kills the server, not the container and its network rules.
# ``sshd``: generate this container's own host key (the image carries none; ed25519 only: RSA
# generation takes seconds per container), authorize the key in
# $DYNHARNESS_AUTHORIZED_KEY for root and the sudo user, and run sshd (the SSH backend's tests).
ENTRYPOINT_SH = f"""#!/bin/sh
set -e
mode="${{1:-idle}}"; [ $# -gt 0 ] && shift
case "$mode" in
idle)
  chain="${{DYNHARNESS_CHAIN:-DYNHARNESS}}"
  iptables -w 5 -N "$chain" 2>/dev/null || true
  iptables -w 5 -C INPUT -j "$chain" 2>/dev/null || iptables -w 5 -I INPUT -j "$chain"
  iptables -w 5 -C OUTPUT -j "$chain" 2>/dev/null || iptables -w 5 -I OUTPUT -j "$chain"
  mkdir -p /var/lib/dynharness
  [ -s /var/lib/dynharness/clock ] || echo +0 > /var/lib/dynharness/clock
  exec sleep infinity ;;
sshd)
  [ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
  if [ -n "$DYNHARNESS_AUTHORIZED_KEY" ]; then
    for home in /root /home/{SSH_USER}; do
      mkdir -p "$home/.ssh" && printf '%s\\n' "$DYNHARNESS_AUTHORIZED_KEY" > "$home/.ssh/authorized_keys"
      chmod 700 "$home/.ssh" && chmod 600 "$home/.ssh/authorized_keys"
    done
    chown -R {SSH_USER}:{SSH_USER} /home/{SSH_USER}/.ssh
  fi
  mkdir -p /run/sshd
  exec /usr/sbin/sshd -D -e ;;
*)
  exec "$mode" "$@" ;;
esac
"""

# Image-wide setup, the same whatever the base: no host keys baked in (each container makes its
# own), a login user with sudo for the SSH backend, the data/clock directory.
SETUP_SH = (f"rm -f /etc/ssh/ssh_host_* && mkdir -p /run/sshd /var/lib/dynharness "
            f"&& (id {SSH_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {SSH_USER}) "
            f"&& echo '{SSH_USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{SSH_USER} "
            f"&& chmod 0440 /etc/sudoers.d/{SSH_USER} && passwd -d {SSH_USER} >/dev/null "
            f"&& (update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null 2>&1 || true)")


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that decides the image's content (the mirror only decides where debs come from)."""

    base_image: str | None = None             # None: debootstrap; else FROM this image + apt
    suite: str = "bookworm"
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    requirements: tuple[str, ...] = NODE_REQUIREMENTS
    python_version: str = "3.11"
    mirror: str = field(default="", compare=False)

    def base_hash(self) -> str:
        return digest(json.dumps([self.base_image, self.suite, sorted(self.packages)]))

    def base_tag(self) -> str:
        return f"{BASE_REPO}:{self.base_hash()[:16]}"

    def node_hash(self) -> str:
        """Hash of base + setup + wheels + entrypoint + the node code: the cache key of the image."""
        parts = [self.base_hash(), SETUP_SH, ENTRYPOINT_SH, json.dumps(sorted(self.requirements)),
                 self.python_version, _dockerfile("BASE"), code_hash()]
        return digest("\0".join(parts))

    def node_tag(self) -> str:
        return f"{NODE_REPO}:{self.node_hash()[:16]}"

    @staticmethod
    def for_target(target: Target, base_image: str | None = None, mirror: str = "") -> "ImageRecipe":
        """The image a target's nodes need: the default packages plus the Debian packages its store
        is (``Target.system_packages``, e.g. etcd-server); the reference Dynamo needs none."""
        return ImageRecipe(base_image=base_image, packages=tuple(dict.fromkeys([*DEFAULT_PACKAGES,
                                                                                 *target.system_packages])),
                           mirror=mirror)


@dataclass(frozen=True)
class BuildStep:
    name: str
    seconds: float
    cached: bool
    detail: str = ""


@dataclass(frozen=True)
class ImageBuild:
    tag: str
    steps: tuple[BuildStep, ...]
    removed: tuple[str, ...] = ()   # ids of the images a forced rebuild replaced and removed

    @property
    def cached(self) -> bool:
        return all(s.cached for s in self.steps)


StepCallback = Callable[[str, str], None]     # (step name, status line) while a step runs


def progress_lines(say: Callable[[str], None], every: float = 5.0) -> StepCallback:
    """A StepCallback that tells ``say`` (one line each) what a build does: a step when it starts
    building and when it is done, and its status at most every ``every`` seconds in between, so a
    first ``--backend docker`` run that builds the image for a minute is not silent. Cached
    steps say nothing (a cached image is the usual case)."""
    last: dict[str, float] = {}

    def on_step(step: str, status: str) -> None:
        if status.startswith("done"):
            if step in last:
                say(f"node image: {step}: {status}")
            return
        now = time.monotonic()
        if step not in last:
            say(f"node image: building {step} (not cached for this recipe yet)")
        elif now - last[step] < every:
            return
        else:
            say(f"node image: {step}: {status[:120]}")
        last[step] = now
    return on_step


def apt_mirror() -> str:
    """The Debian mirror apt uses on this machine (so debootstrap fetches from the same place)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):            # deb822 .sources
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and re.search(r"\bbookworm\b", suites.group(1)) and "security" not in uris.group(1):
                return uris.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def _dockerfile(base: str) -> str:
    return (f"FROM {base}\n"
            f"RUN {SETUP_SH}\n"
            f"COPY entrypoint {ENTRYPOINT}\n"
            f"COPY site {SITE_DIR}\n"
            f"COPY app {APP_DIR}\n"
            f"ENV PYTHONPATH={SITE_DIR}:{APP_DIR} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n"
            f"WORKDIR {APP_DIR}\n"
            f'ENTRYPOINT ["{ENTRYPOINT}"]\n'
            f'CMD ["idle"]\n')


def _image_id(client, tag: str) -> str | None:
    """The id of the image ``tag`` names, None when there is none."""
    import docker.errors
    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def _image_exists(client, tag: str) -> bool:
    return _image_id(client, tag) is not None


def _stream_build(client, context: bytes, tag: str, labels: dict[str, str], pull: bool,
                  on_status: Callable[[str], None]) -> None:
    """docker build from an in-memory context; raise UserError with the builder's own error line."""
    import docker.errors
    try:
        for chunk in client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True,
                                      forcerm=True, pull=pull, labels=labels, decode=True):
            if "error" in chunk:
                raise UserError(f"image build failed: {chunk['error'].strip()}")
            line = (chunk.get("stream") or chunk.get("status") or "").strip()
            if line:
                on_status(line[:120])
    except docker.errors.APIError as e:
        raise UserError(f"image build failed: {e.explanation or e}") from None
    except OSError as e:  # includes requests' timeouts/connection errors
        raise UserError(f"image build failed talking to the Docker engine ({e}); is dockerd healthy?") from None


def _tar_context(files: dict[str, bytes], dirs: dict[str, Path], code: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for arc, path in dirs.items():
            tar.add(path, arc)
        if code:
            for rel, path in code_files():
                tar.add(path, f"app/{rel}")
    return buf.getvalue()


def _debootstrap_base(client, recipe: ImageRecipe, on_status: Callable[[str], None], timeout: float) -> None:
    if os.geteuid() != 0:
        raise UserError("building the base image with debootstrap needs root; run as root or pass "
                        "--base-image debian:bookworm-slim where a registry is reachable")
    if not shutil.which("debootstrap"):
        raise UserError("debootstrap is not installed: apt-get install -y debootstrap "
                        "(or pass --base-image debian:bookworm-slim where a registry is reachable)")
    mirror = recipe.mirror or apt_mirror()
    debs = CACHE_DIR / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dynharness-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = ["debootstrap", "--variant=minbase", f"--cache-dir={debs}", f"--include={','.join(recipe.packages)}",
                recipe.suite, str(rootfs), mirror]
        on_status(f"debootstrap {recipe.suite} from {mirror}")
        log = Path(tmp) / "debootstrap.log"
        try:
            with open(log, "w") as out:
                subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=True)
        except subprocess.TimeoutExpired:
            raise UserError(f"debootstrap took over {timeout:.0f}s: check the mirror {mirror}") from None
        except subprocess.CalledProcessError:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise UserError(f"debootstrap failed ({tail[0][:160]}); check the mirror {mirror} "
                            "or pass --base-image") from None
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        on_status("docker import")
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True,
                       timeout=timeout)
        repo, tag = recipe.base_tag().split(":")
        try:
            client.api.import_image_from_file(str(tarball), repository=repo, tag=tag,
                                              changes=[f"LABEL {LABEL}=1", 'CMD ["/bin/bash"]'])
        except Exception as e:  # docker.errors.APIError or a transport error
            raise UserError(f"docker import of the base root filesystem failed: {e}") from None
    if not _image_exists(client, recipe.base_tag()):
        raise UserError("docker import did not produce the base image; see the dockerd log")


def _apt_base(client, recipe: ImageRecipe, on_status: Callable[[str], None]) -> None:
    dockerfile = (f"FROM {recipe.base_image}\n"
                  "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                  f"{' '.join(recipe.packages)} && rm -rf /var/lib/apt/lists/*\n")
    _stream_build(client, _tar_context({"Dockerfile": dockerfile.encode()}, {}, code=False), recipe.base_tag(),
                  {LABEL: "1"}, pull=False, on_status=on_status)  # a missing base is pulled anyway; a local one is used


def ensure_image(client, recipe: ImageRecipe = ImageRecipe(), *, force: bool = False,
                 on_step: StepCallback | None = None, timeout: float = 900.0) -> ImageBuild:
    """Return the node image for ``recipe``, building only what is missing (or everything with force)."""
    say = on_step or (lambda step, status: None)
    steps: list[BuildStep] = []

    def step(name: str, cached: bool, fn: Callable[[], str | None]) -> None:
        t0 = time.monotonic()
        detail = "" if cached else (fn() or "")
        steps.append(BuildStep(name, time.monotonic() - t0, cached, detail or ("cached" if cached else "")))
        say(name, "done (cached)" if cached else f"done in {time.monotonic() - t0:.1f}s")

    base_tag, node_tag = recipe.base_tag(), recipe.node_tag()
    # a forced rebuild moves both tags to new images: the old ones (200+ MB each) would be left
    # untagged, out of reach of prune_node_images, so note them now and remove them at the end
    replaced = [i for i in (_image_id(client, node_tag), _image_id(client, base_tag)) if i] if force else []
    if recipe.base_image:
        step("base image (apt)", not force and _image_exists(client, base_tag),
             lambda: _apt_base(client, recipe, lambda s: say("base image (apt)", s)))
    else:
        step("base image (debootstrap + import)", not force and _image_exists(client, base_tag),
             lambda: _debootstrap_base(client, recipe, lambda s: say("base image (debootstrap + import)", s), timeout))
    wheels_at = wheel_dir(recipe.requirements, recipe.python_version)
    if force:
        shutil.rmtree(wheels_at, ignore_errors=True)
    step("python wheels (offline install)", (wheels_at / ".complete").exists(),
         lambda: f"{len(download_wheels(recipe.requirements, recipe.python_version, wheels_at))} wheels")
    have_node = not force and _image_exists(client, node_tag)

    def build_node() -> str:
        with tempfile.TemporaryDirectory(prefix="dynharness-site-") as tmp:
            unpack_wheels(sorted(wheels_at.glob("*.whl")), Path(tmp) / "site")
            context = _tar_context({"Dockerfile": _dockerfile(base_tag).encode(), "entrypoint": ENTRYPOINT_SH.encode()},
                                   {"site": Path(tmp) / "site"}, code=True)
        _stream_build(client, context, node_tag, {LABEL: "1", f"{LABEL}.recipe": recipe.node_hash(),
                                                  BASE_LABEL: recipe.base_hash()},
                      pull=False, on_status=lambda s: say("node layer (code + deps)", s))
        client.images.get(node_tag).tag(NODE_REPO, "latest")
        return f"packages: {', '.join(node_packages())}"

    step("node layer (code + deps)", have_node, build_node)
    if not have_node:
        prune_node_images(client, keep=node_tag, base=recipe.base_hash())
        prune_unused_bases(client, keep=base_tag)
    removed = remove_replaced(client, replaced, keep=(node_tag, base_tag))
    return ImageBuild(node_tag, tuple(steps), removed)


def remove_replaced(client, image_ids: list[str], keep: tuple[str, ...]) -> tuple[str, ...]:
    """Remove the images a forced rebuild replaced (ids, the node image's before its base's, which
    it is built on), except one that ``keep``'s tags still name (a rebuild that reproduced it).
    One a container still uses stays. The ids removed."""
    kept = {_image_id(client, tag) for tag in keep}
    removed = []
    for image_id in image_ids:
        if image_id in kept:
            continue
        try:
            client.images.remove(image_id, noprune=False)
            removed.append(image_id)
        except Exception:       # noqa: BLE001 - in use by a container (a kept cluster), or gone: keep going
            pass
    return tuple(removed)


def _remove_tags(client, img) -> int:
    """Remove every tag of ``img`` (its last removes the image); how many went. One a container
    uses (a kept cluster) stays."""
    removed = 0
    for tag in img.tags:
        try:
            client.images.remove(tag, noprune=False)
            removed += 1
        except Exception:       # in use by a container: keep it
            pass
    return removed


def prune_unused_bases(client, keep: str) -> int:
    """Remove base images no node image is built on any more (their recipe changed: other default
    packages), except ``keep``: a base another target's node image uses stays (etcd's beside the
    reference store's), and so does one a container uses. Each is ~200 MB."""
    used = {str(img.labels.get(BASE_LABEL, ""))[:16] for img in client.images.list(name=NODE_REPO)}
    removed = 0
    for img in client.images.list(name=BASE_REPO):
        hashes = {t.partition(":")[2] for t in img.tags if t.startswith(f"{BASE_REPO}:")}
        if keep in img.tags or hashes & used:
            continue
        removed += _remove_tags(client, img)
    return removed


def prune_node_images(client, keep: str, base: str) -> int:
    """Remove node images of older recipes on the same base (each code change makes one); images
    in use stay, and so do those of another base (another target's packages: building the etcd
    image must not throw away the reference store's)."""
    removed = 0
    for img in client.images.list(name=NODE_REPO):
        if keep in img.tags or img.labels.get(BASE_LABEL, base) != base:
            continue
        removed += _remove_tags(client, img)
    return removed
