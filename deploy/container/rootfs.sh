#!/usr/bin/env bash
# Assembles the image's whole file system from a built `nines` binary: the binary, the shared
# libraries it loads (glibc: since 2.34 its DNS and /etc/hosts resolution is inside libc.so.6, so
# no NSS modules are needed), the CA certificates rustls verifies providers with, a non-root user
# and the directories nines writes. No shell, no package manager, nothing else.
#
#   deploy/container/rootfs.sh BINARY DEST
#
# Runs on the build host (deploy/container/build.sh) or in the Containerfile's `compiled` stage.
set -euo pipefail
binary="${1:?usage: rootfs.sh BINARY DEST}"
dest="${2:?usage: rootfs.sh BINARY DEST}"
[[ -x "$binary" ]] || { echo "rootfs.sh: $binary is not an executable" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest/usr/local/bin" "$dest/etc/nines" "$dest/etc/ssl/certs" "$dest/var/lib/nines" "$dest/tmp"
install -m 0755 "$binary" "$dest/usr/local/bin/nines"

# Every shared object the binary needs, at the path the loader looks for it (symlinks resolved).
ldd "$binary" | awk '/=> \//{print $3} /^\s*\/lib/{print $1}' | sort -u | while read -r lib; do
  mkdir -p "$dest$(dirname "$lib")"
  cp -L "$lib" "$dest$lib"
done
# The dynamic loader itself (its path is baked into the binary as PT_INTERP).
interp="$(readelf -l "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')"
if [[ -n "$interp" && ! -e "$dest$interp" ]]; then
  mkdir -p "$dest$(dirname "$interp")"
  cp -L "$interp" "$dest$interp"
fi

bundle=/etc/ssl/certs/ca-certificates.crt
[[ -f "$bundle" ]] || { echo "rootfs.sh: no CA bundle at $bundle (install ca-certificates)" >&2; exit 1; }
cp -L "$bundle" "$dest$bundle"

# The user nines runs as (65532, as distroless' "nonroot"), and name resolution's order.
cat > "$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nines:x:65532:65532:nines:/var/lib/nines:/sbin/nologin
PASSWD
cat > "$dest/etc/group" <<'GROUP'
root:x:0:
nines:x:65532:
GROUP
echo "hosts: files dns" > "$dest/etc/nsswitch.conf"
chmod 1777 "$dest/tmp"
echo "rootfs.sh: $(du -sh "$dest" | cut -f1) in $dest"
