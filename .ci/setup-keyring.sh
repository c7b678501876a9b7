#!/usr/bin/env bash
# System parts of the credential tests: a real Secret Service to test the keyring against.
# The tests start their own private session bus (dbus-run-session) and
# gnome-keyring-daemon; this only installs them. Safe to run again.
set -euo pipefail

need=()
command -v dbus-run-session >/dev/null 2>&1 || need+=(dbus)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
# secret-tool: handy for poking at the test keyring by hand; the tests do not need it
command -v secret-tool >/dev/null 2>&1 || need+=(libsecret-tools)
if [ "${#need[@]}" -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
