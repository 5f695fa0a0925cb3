#!/usr/bin/env bash
# Makes sure this Linux machine can load TorchSharp's native library (libLibTorchSharp.so), which needs
# GLIBCXX_3.4.32 (libstdc++ from GCC 13+). Debian 12 ships GCC 12; the fix is libstdc++6 from Debian 13
# (trixie). Idempotent: does nothing when the symbol is already there, or on non-Debian systems
# (those are reported, not changed).
set -euo pipefail
need=GLIBCXX_3.4.32
lib=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
[ -n "$lib" ] || lib=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
if grep -aq "$need" "$lib" 2>/dev/null; then
  echo "native deps: $lib provides $need"; exit 0
fi
. /etc/os-release 2>/dev/null || true
if [ "${ID:-}" != "debian" ]; then
  echo "native deps: $lib lacks $need and this is not Debian (${PRETTY_NAME:-unknown}); install libstdc++ from GCC 13 or newer." >&2
  exit 1
fi
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
echo "native deps: $lib lacks $need; installing libstdc++6 from Debian 13 (trixie)"
src=/etc/apt/sources.list.d/diffusion-trixie.sources
if [ ! -f "$src" ]; then
  $sudo tee "$src" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  # Keep the rest of the system on its own release: only what we ask for comes from trixie.
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' | $sudo tee /etc/apt/preferences.d/diffusion-trixie >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq -o Dpkg::Use-Pty=0 >/dev/null
$sudo apt-get install -y -qq -o Dpkg::Use-Pty=0 -t trixie libstdc++6 >/dev/null
lib=$(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
grep -aq "$need" "$lib" || { echo "native deps: $need still missing from $lib after the upgrade" >&2; exit 1; }
echo "native deps: installed; $lib provides $need"
