#!/bin/bash
set -u
mnt="$1"; src="$2"; bin="$3"
mkdir -p "$mnt"
mount -t tmpfs -o size=256k tmpfs "$mnt" || exit 90
cp -a "$src" "$mnt/root"
snap() { (cd "$mnt/root" && find . -printf '%y %m %U:%G %p -> %l\n' | sort && find . -type f -exec md5sum {} + | sort); }
snap > "$mnt/../before.txt"
# Fill the file system, leaving two pages: the journal can start, later writes cannot.
dd if=/dev/zero of="$mnt/filler" bs=1k count=$(( $(df -k --output=avail "$mnt" | tail -1) - 8 )) 2>/dev/null
PATH="$STANDIN_PATH" "$bin" install --yes --root "$mnt/root" > "$mnt/../install.txt" 2>&1; echo "install exit $?" >> "$mnt/../install.txt"
rm -f "$mnt/filler"
PATH="$STANDIN_PATH" "$bin" rollback --root "$mnt/root" > "$mnt/../rollback.txt" 2>&1; echo "rollback exit $?" >> "$mnt/../rollback.txt"
snap > "$mnt/../after.txt"
