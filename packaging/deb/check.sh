#!/usr/bin/env bash
# Install, verify and remove a hecate-agent .deb on this machine (CI: .ci/run, `make deb-check`). Root only.
#   dpkg -i; hecate-agent --version and validate; state dir 0700; unit installed but not enabled and
#   `systemd-analyze verify` clean; completions load; dpkg -r leaves only the conffile and the state dir;
#   dpkg -P leaves only the state dir. Refuses to touch a machine where hecate-agent is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

deb=${1:?usage: packaging/deb/check.sh build/hecate-agent_VERSION_ARCH.deb}
fail() { echo "deb check: FAILED: $*" >&2; exit 1; }
step() { echo "deb check: $*" >&2; }

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i)"
if dpkg-query -W -f '${Status}' hecate-agent 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "hecate-agent is already installed here; this check installs and purges it, so it will not run"
fi
version=$(dpkg-deb -f "$deb" Version)
unit=/lib/systemd/system/hecate-agent.service
state_existed=no
[ -d /var/lib/hecate-agent ] && state_existed=yes
# Every file and symlink the package ships (directories are shared with other packages).
mapfile -t shipped < <(dpkg-deb --fsys-tarfile "$deb" | tar -tv | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|')
[ "${#shipped[@]}" -gt 100 ] || fail "the package lists only ${#shipped[@]} files"

cleanup() {
  dpkg -P hecate-agent >/dev/null 2>&1 || true
  [ "$state_existed" = yes ] || rm -rf /var/lib/hecate-agent
}
trap cleanup EXIT

step "dpkg -i $deb"
dpkg -i "$deb"
[ "$(dpkg-query -W -f '${Status}' hecate-agent)" = "install ok installed" ] || fail "dpkg does not list it as installed"

step "hecate-agent --version"
[ "$(readlink -f /usr/bin/hecate-agent)" = /usr/lib/hecate-agent/bin/hecate-agent ] || fail "/usr/bin/hecate-agent"
got=$(env -i PATH=/usr/bin:/bin hecate-agent --version)
[ "$got" = "hecate-agent, version $version" ] || fail "--version said: $got"
env -i PATH=/usr/bin:/bin hecate-agent validate sample-repo >/dev/null || fail "validate sample-repo"
# The example settings are valid and name no source: the daemon refuses to start rather than guess.
if out=$(env -i PATH=/usr/bin:/bin timeout 30 hecate-agent run 2>&1); then fail "run started without a source"; fi
grep -q "no source configured" <<<"$out" || fail "run without a source said: $out"

step "state directory, conffile, unit, completions"
[ "$(stat -c '%a %U' /var/lib/hecate-agent)" = "700 root" ] || fail "/var/lib/hecate-agent is not 0700 root"
[ "$(dpkg-query -W -f '${Conffiles}' hecate-agent | awk '{print $1}')" = /etc/hecate-agent/agent.yaml ] \
  || fail "agent.yaml is not a conffile"
[ ! -e /etc/systemd/system/multi-user.target.wants/hecate-agent.service ] || fail "the service was enabled"
grep -q '^ExecStart=/usr/bin/hecate-agent run$' "$unit" || fail "ExecStart in $unit"
if command -v systemd-analyze >/dev/null; then
  verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
  [ -z "$verify" ] || fail "systemd-analyze verify complained: $verify"
else
  step "systemd-analyze not installed: verify skipped"
fi
bash -c 'source /usr/share/bash-completion/completions/hecate-agent && complete -p hecate-agent' >/dev/null \
  || fail "bash completion does not load"
head -1 /usr/share/zsh/vendor-completions/_hecate-agent | grep -qx '#compdef hecate-agent' || fail "zsh completion"

step "dpkg -r"
echo "# edited" >>/etc/hecate-agent/agent.yaml
dpkg -r hecate-agent
for path in "${shipped[@]}"; do
  [ "$path" = /etc/hecate-agent/agent.yaml ] && continue
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "dpkg -r left $path"
done
[ ! -e /usr/lib/hecate-agent ] || fail "dpkg -r left /usr/lib/hecate-agent"
grep -q '^# edited$' /etc/hecate-agent/agent.yaml || fail "dpkg -r did not keep the edited conffile"
[ -d /var/lib/hecate-agent ] || fail "dpkg -r removed the state directory"

step "dpkg -P"
dpkg -P hecate-agent
for path in "${shipped[@]}" /etc/hecate-agent /etc/systemd/system/hecate-agent.service \
  /var/lib/systemd/deb-systemd-helper-enabled/hecate-agent.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-masked/hecate-agent.service; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "dpkg -P left $path"
done
[ -d /var/lib/hecate-agent ] || fail "dpkg -P removed the state directory (it keeps data)"
if dpkg-query -W -f '${Status}' hecate-agent 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "dpkg still knows hecate-agent after purge"
fi
step "ok: installed, verified, removed and purged $deb"
