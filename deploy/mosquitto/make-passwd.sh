#!/bin/sh
# Builds the broker's password file from deploy/mosquitto/users ("name:password" lines).
# The ingest account is taken from INGEST_MQTT_PASSWORD so it always matches the workers.
set -eu
src="${USERS_FILE:-/deploy/users}"
out="${PASSWD_FILE:-/mosquitto/auth/passwd}"
tmp="$out.tmp"
: > "$tmp"
if [ -f "$src" ]; then
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' -e '^ingest:' "$src" >> "$tmp" || true
fi
printf 'ingest:%s\n' "${INGEST_MQTT_PASSWORD:?INGEST_MQTT_PASSWORD is not set}" >> "$tmp"
mosquitto_passwd -U "$tmp"
chmod 0600 "$tmp"
if [ "$(id -u)" = 0 ]; then chown mosquitto:mosquitto "$tmp"; fi
mv "$tmp" "$out"
echo "password file written: $(wc -l < "$out") account(s)"
