#!/usr/bin/env bash
# Build build/hecate-agent_<version>_<arch>.deb with dpkg-deb (no debhelper):
#   /usr/lib/hecate-agent          a virtualenv of Debian's python3 holding the agent and its dependencies
#   /usr/bin/hecate-agent          -> ../lib/hecate-agent/bin/hecate-agent
#   /lib/systemd/system/hecate-agent.service   systemd/hecate-agent.service, ExecStart=/usr/bin/hecate-agent
#   /etc/hecate-agent/agent.yaml   an example with no source (a conffile)
#   bash and zsh completion, copyright, examples; maintainer scripts from this folder.
# The virtualenv carries compiled wheels (pydantic-core, watchfiles, ...) for this machine's architecture and
# Python: build on the Debian release (and architecture) the package is for. Needs PyPI (pip install).
# A virtualenv is not relocatable, so it is built in the staging folder and then rewritten to its final path:
# script shebangs and pyvenv.cfg are edited, bytecode is compiled with the final paths, and the build fails if
# any file still names the staging folder.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${DEB_PYTHON:-/usr/bin/python3}
OUT=${DEB_OUT:-build}
FINAL=/usr/lib/hecate-agent

die() { echo "make deb: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian package dpkg)"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
interpreter=/usr/bin/python$pyver
[ -x "$interpreter" ] || die "$interpreter not found: the package depends on Debian's python$pyver"
"$interpreter" -c 'import sys; assert sys.version_info >= (3, 11)' || die "Python 3.11 or later is needed"
"$interpreter" -c 'import ensurepip' 2>/dev/null || die "install python3-venv (python$pyver -m venv needs it)"
version=$("$interpreter" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)

work=$(realpath -m "$OUT/deb")
stage=$work/root
venv=$stage$FINAL
rm -rf "$work"
mkdir -p "$stage/DEBIAN" "$work/wheel"

echo "make deb: virtualenv for python$pyver at $FINAL" >&2
"$interpreter" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# setuptools builds in ./build/lib and would put modules deleted since the last build into the wheel.
rm -rf build/lib build/bdist.*
"$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/wheel" .
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "$work"/wheel/hecate_agent-*.whl
"$venv/bin/python" -m pip uninstall --quiet --yes setuptools pip >/dev/null 2>&1 || true
rm -rf "$venv"/lib/python*/site-packages/hecate_agent-*.dist-info/direct_url.json "$venv/bin"/pip* \
  "$venv/bin"/Activate.ps1
find "$venv" -name __pycache__ -prune -exec rm -rf {} +
# Text files naming the staging folder (script shebangs, activate, pyvenv.cfg's `command`): the final path.
grep -rlI --null -F "$stage" "$venv" | xargs -0 -r sed -i "s|$stage||g"
"$venv/bin/python" -m compileall -q -j 0 -s "$stage" -p / "$venv/lib"
if leftover=$(grep -rl -F "$stage" "$stage" | head -5) && [ -n "$leftover" ]; then
  die "files still name the staging folder: $leftover"
fi

install -d "$stage/usr/bin"
ln -s ../lib/hecate-agent/bin/hecate-agent "$stage/usr/bin/hecate-agent"

install -d "$stage/lib/systemd/system"
sed 's|^ExecStart=/usr/local/bin/hecate-agent |ExecStart=/usr/bin/hecate-agent |' systemd/hecate-agent.service \
  >"$stage/lib/systemd/system/hecate-agent.service"
grep -q '^ExecStart=/usr/bin/hecate-agent run$' "$stage/lib/systemd/system/hecate-agent.service" \
  || die "systemd/hecate-agent.service: ExecStart no longer starts with /usr/local/bin/hecate-agent"
chmod 0644 "$stage/lib/systemd/system/hecate-agent.service"

install -d -m 0755 "$stage/etc/hecate-agent"
install -m 0644 packaging/deb/agent.yaml "$stage/etc/hecate-agent/agent.yaml"

install -d "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions"
_HECATE_AGENT_COMPLETE=bash_source "$venv/bin/python" -m hecate_agent \
  >"$stage/usr/share/bash-completion/completions/hecate-agent"
_HECATE_AGENT_COMPLETE=zsh_source "$venv/bin/python" -m hecate_agent \
  >"$stage/usr/share/zsh/vendor-completions/_hecate-agent"

docs=$stage/usr/share/doc/hecate-agent
install -d "$docs/examples"
install -m 0644 packaging/deb/copyright "$docs/copyright"
install -m 0644 README.md "$docs/README.md"
install -m 0644 packaging/nginx-stream.conf "$docs/examples/nginx-stream.conf"

for script in postinst prerm postrm; do
  install -m 0755 "packaging/deb/$script" "$stage/DEBIAN/$script"
done
echo /etc/hecate-agent/agent.yaml >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: hecate-agent
Version: $version
Architecture: $arch
Maintainer: hecate-agent authors <agent@hecate.io>
Installed-Size: $size
Depends: python$pyver, git
Recommends: caddy
Suggests: nginx-light, libnginx-mod-stream
Section: net
Priority: optional
Homepage: https://hecate.io/agent
Description: GitOps agent for Caddy and Nginx reverse-proxy nodes
 Pulls a Git repository of Hecate specs (HTTP routes, TCP/UDP streams, auth
 policies), validates them, plans against the live Caddy and Nginx, and
 applies atomically with a last-known-good snapshot. The service is installed
 disabled: set a source in /etc/hecate-agent/agent.yaml, then enable it.
CONTROL

deb="$OUT/hecate-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
