#!/usr/bin/env bash
# Lets `ray up cluster-local.yaml` reach this machine over SSH as two nodes: sshd listening on
# 127.0.0.2 (the head) and 127.0.0.3 (the worker), and a key only this cluster uses.
# Needs root and Debian's openssh-server and rsync (.ci/run installs them). Idempotent.
set -euo pipefail

KEY="$HOME/.ssh/tuneforge_local_cluster"
CONFIG=/etc/ssh/sshd_config.d/tuneforge-loopback.conf

command -v sshd >/dev/null || { echo "error: sshd not found: apt-get install openssh-server rsync" >&2; exit 2; }
command -v rsync >/dev/null || { echo "error: rsync not found: apt-get install rsync" >&2; exit 2; }

mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
[ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C tuneforge-local-cluster -f "$KEY"
touch "$HOME/.ssh/authorized_keys" && chmod 600 "$HOME/.ssh/authorized_keys"
grep -qF "$(cat "$KEY.pub")" "$HOME/.ssh/authorized_keys" || cat "$KEY.pub" >> "$HOME/.ssh/authorized_keys"

# Only the two loopback addresses, keys only.
cat > "$CONFIG" <<CONF
ListenAddress 127.0.0.2
ListenAddress 127.0.0.3
PermitRootLogin prohibit-password
PasswordAuthentication no
CONF

mkdir -p /run/sshd
if pgrep -x sshd >/dev/null; then pkill -HUP -x sshd; else /usr/sbin/sshd; fi

for host in 127.0.0.2 127.0.0.3; do
  for _ in $(seq 20); do
    ssh -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR "root@$host" true && continue 2
    sleep 0.5
  done
  echo "error: ssh to root@$host with $KEY does not work" >&2
  exit 1
done
echo "sshd answers on 127.0.0.2 and 127.0.0.3 with $KEY"
