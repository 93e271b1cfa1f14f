#!/usr/bin/env bash
# Make the secrets of the compose deployment (deploy/docker-compose.yml; docs/security.md): a CA and
# psd's certificate for the names psd and psd1 (scripts/make-certs.sh, the openssl command line),
# random passwords for the users trainer (worker: pstrain's workers and evaluator), inspector
# (reader: psctl) and admin, and psd's users file with their argon2id hashes (`psd hash-password`:
# the psd on PATH, else the one in the pscope image). Compose mounts them read-only under
# /run/secrets/ (never environment variables or command lines).
#   deploy/make-secrets.sh [DIR]     DIR defaults to deploy/secrets (PSCOPE_SECRETS in compose)
# Run as root, the files are given to the image's user (uid 10001) with mode 0400; otherwise they
# are made readable (0444) inside a 0700 directory, since a file-based compose secret is a bind
# mount that keeps the host's owner and mode.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/secrets}
image=${PSCOPE_IMAGE:-pscope:latest}

hash_password() {
    if command -v psd > /dev/null 2>&1; then
        psd hash-password
    else
        docker run --rm -i --network none "$image" psd hash-password
    fi
}

mkdir -p "$dir"
chmod 700 "$dir"
"$here/../scripts/make-certs.sh" "$dir/certs" psd psd1 > /dev/null
cp "$dir/certs/ca.pem" "$dir/ca.pem"
cp "$dir/certs/server.pem" "$dir/server.pem"
(umask 077 && cp "$dir/certs/server.key" "$dir/server.key")
rm -rf "$dir/certs" # the CA key and the test certificates stay out of the deployment
(
    umask 077
    : > "$dir/users.tmp"
    for u in trainer:worker inspector:reader admin:admin; do
        name=${u%%:*}
        head -c 18 /dev/urandom | base64 > "$dir/$name.password"
        printf '%s %s %s\n' "$name" "${u#*:}" \
            "$(tr -d '\n' < "$dir/$name.password" | hash_password)" >> "$dir/users.tmp"
    done
    mv "$dir/users.tmp" "$dir/users"
)
files=(ca.pem server.pem server.key users trainer.password inspector.password admin.password)
if [ "$(id -u)" = 0 ]; then
    (cd "$dir" && chown 10001:10001 "${files[@]}" && chmod 0400 "${files[@]}")
else
    (cd "$dir" && chmod 0444 "${files[@]}")
fi
echo "secrets in $dir: ${files[*]}"
