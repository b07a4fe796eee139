#!/bin/sh
# Installs warden's manual page, warden(1), generated from the command definitions in Sources/warden
# by swift-argument-parser's GenerateManual plugin, so that `man warden` matches `warden --help`.
#   scripts/install-man.sh                 into /usr/local/share/man/man1
#   PREFIX=/usr scripts/install-man.sh     into /usr/share/man/man1
#   DESTDIR=/tmp/stage scripts/install-man.sh   staged, for a package
set -eu
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
# Builds the package (a debug build: the page is the same, and the plugin's default, release, takes
# far longer) and runs `warden --experimental-dump-help`; other arguments go to the plugin.
swift package plugin generate-manual --configuration "${CONFIGURATION:-debug}" "$@"
page=$(find .build/plugins/GenerateManual -name warden.1 | head -n 1)
[ -n "$page" ] || { echo "install-man.sh: the plugin wrote no warden.1" >&2; exit 1; }
install -D -m 0644 "$page" "${DESTDIR:-}$PREFIX/share/man/man1/warden.1"
echo "installed ${DESTDIR:-}$PREFIX/share/man/man1/warden.1"
