#!/bin/sh
# Builds the broker's password file from deploy/mosquitto/users ("name:password" lines).
# The ingest account is taken from INGEST_MQTT_PASSWORD so it always matches the workers.
# Refuses, naming the account or variable but never the password: the example passwords
# (change-me...), passwords shorter than MIN_PASSWORD_LENGTH (12), and user names that are
# not gateway ids (the ACL puts the user name into topics; gateway ids never start with
# ingest-). It checks the other secrets of .env it is given (OTHER_SECRETS) the same way.
# Nothing is written then, and the broker and the database, which wait for this to succeed,
# do not start.
set -eu
umask 077
src="${USERS_FILE:-/deploy/users}"
out="${PASSWD_FILE:-/mosquitto/auth/passwd}"
min="${MIN_PASSWORD_LENGTH:-12}"
tmp="$out.tmp"
cr="$(printf '\r')"
bad=0

refuse() {
    echo "make-passwd: $1" >&2
    bad=1
}

check_password() {  # account, password, where it comes from
    case "$2" in
        change-me*) refuse "$1 ($3): still the example password; set a random one (openssl rand -hex 16)" ;;
        *) if [ "${#2}" -lt "$min" ]; then
               refuse "$1 ($3): password shorter than $min characters"
           fi ;;
    esac
}

: > "$tmp"
if [ -f "$src" ]; then
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line="${line%"$cr"}"
        case "$line" in
            *[![:space:]]*) ;;
            *) continue ;;
        esac
        case "${line#"${line%%[![:space:]]*}"}" in
            '#'*) continue ;;
        esac
        case "$line" in
            *:*) ;;
            *) refuse "$src line $n: expected name:password"; continue ;;
        esac
        name="${line%%:*}"
        [ "$name" = ingest ] && continue  # from INGEST_MQTT_PASSWORD below
        if ! printf '%s\n' "$name" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'; then
            refuse "$src line $n: user name '$name' is not a gateway id (letters, digits, _ . -; at most 64)"
            continue
        fi
        case "$name" in
            ingest-*) refuse "$src line $n: user name '$name': ingest- starts the ingest workers' client ids"
                      continue ;;
        esac
        check_password "$name" "${line#*:}" "$src line $n"
        printf '%s\n' "$line" >> "$tmp"
    done < "$src"
fi
check_password ingest "${INGEST_MQTT_PASSWORD:?INGEST_MQTT_PASSWORD is not set}" INGEST_MQTT_PASSWORD
for name in ${OTHER_SECRETS:-}; do
    eval "value=\${$name:-}"
    check_password "$name" "$value" .env
done
if [ "$bad" != 0 ]; then
    rm -f "$tmp"
    echo "make-passwd: password file not written" >&2
    exit 1
fi
printf 'ingest:%s\n' "$INGEST_MQTT_PASSWORD" >> "$tmp"
mosquitto_passwd -U "$tmp"
chmod 0600 "$tmp"
if [ "$(id -u)" = 0 ]; then chown mosquitto:mosquitto "$tmp"; fi
mv "$tmp" "$out"
echo "password file written: $(wc -l < "$out") account(s)"
