#!/usr/bin/env bash
# Build a Debian 12 (bookworm) Vagrant box for the libvirt provider from Debian's packages alone, for hosts
# with no route to Vagrant Cloud.
#
#   tools/build-box.sh [--driver kvm|qemu] [--name NAME] [--disk-gb N] [--mirror URL] [--add] [OUTPUT.box]
#
# The disk has no partition table: one ext4 filesystem over the whole disk, booted by extlinux (it boots on
# kernels without partition support, and the box needs no partitioning tool). The box has a `vagrant` user
# with Vagrant's standard insecure key (Vagrant replaces it on the first `vagrant up`), password-less sudo,
# sshd, ifupdown with DHCP on eth0 (Vagrant configures the private network on eth1), and a serial console.
# --driver sets the box's default libvirt driver (the Vagrantfile's LAB_LIBVIRT_DRIVER overrides it): kvm,
# or qemu (software emulation) where nested KVM does not boot a stock Debian kernel. --add adds the box to
# Vagrant under NAME. Needs root, debootstrap, extlinux, qemu-img and a loop device.
set -euo pipefail

driver=kvm
name=chaoslab/bookworm64
disk_gb=20
mirror=http://deb.debian.org/debian
add=false
output=""
die() { echo "build-box: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --driver) driver=${2:-}; shift 2 ;;
        --name) name=${2:-}; shift 2 ;;
        --disk-gb) disk_gb=${2:-}; shift 2 ;;
        --mirror) mirror=${2:-}; shift 2 ;;
        --add) add=true; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) output=$1; shift ;;
    esac
done
case $driver in kvm|qemu) ;; *) die "--driver must be kvm or qemu, not '$driver'" ;; esac
[[ $disk_gb =~ ^[0-9]+$ ]] && [ "$disk_gb" -ge 4 ] || die "--disk-gb must be a whole number of GiB, at least 4"
[ -n "$name" ] || die "--name must not be empty"
output=${output:-$(pwd)/.vagrant-boxes/$(basename "$name")-libvirt.box}
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, a loop mount, extlinux)"
for tool in debootstrap extlinux qemu-img mkfs.ext4 blkid; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap extlinux qemu-utils e2fsprogs"
done
insecure_key=""
for candidate in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub; do
    [ -f "$candidate" ] && insecure_key=$candidate
done
[ -n "$insecure_key" ] || die "Vagrant's insecure public key (keys/vagrant.pub of the vagrant package) is missing: install vagrant"

work=$(mktemp -d /var/tmp/chaoslab-box.XXXXXX)
root=$work/root
cleanup() {
    set +e
    for fs in dev/pts dev proc sys; do mountpoint -q "$root/$fs" && umount -l "$root/$fs"; done
    mountpoint -q "$root" && umount "$root"
    rm -rf "$work"
}
trap cleanup EXIT

echo "build-box: a ${disk_gb} GiB whole-disk ext4 image"
truncate -s "${disk_gb}G" "$work/disk.raw"
# extlinux reads ext4 without the 64bit and metadata_csum_seed features.
mkfs.ext4 -q -L chaoslab-root -O ^64bit,^metadata_csum_seed "$work/disk.raw"
uuid=$(blkid -s UUID -o value "$work/disk.raw")
mkdir -p "$root"
mount -o loop "$work/disk.raw" "$root"

echo "build-box: debootstrap bookworm from $mirror"
debootstrap --variant=minbase \
    --include=linux-image-amd64,systemd-sysv,udev,kmod,dbus,python3-apt,acl,ifupdown,isc-dhcp-client,openssh-server,sudo,python3,ca-certificates,iproute2,netbase,less,procps \
    bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

echo "build-box: configure the system"
cat > "$root/etc/fstab" <<EOF
UUID=$uuid / ext4 errors=remount-ro 0 1
EOF
echo bookworm > "$root/etc/hostname"
cat > "$root/etc/hosts" <<EOF
127.0.0.1 localhost
127.0.1.1 bookworm
EOF
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://security.debian.org/debian-security bookworm-security main
EOF
cat > "$root/etc/network/interfaces" <<EOF
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF
# Each VM makes its own machine id and SSH host keys on first boot.
: > "$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-host-keys.service" <<EOF
[Unit]
Description=Make the SSH host keys this machine lacks
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
RequiredBy=ssh.service
EOF
mkdir -p "$root/etc/systemd/system/ssh.service.requires"
ln -sf /etc/systemd/system/ssh-host-keys.service "$root/etc/systemd/system/ssh.service.requires/"
echo "UseDNS no" > "$root/etc/ssh/sshd_config.d/vagrant.conf"

chroot "$root" /usr/sbin/useradd --create-home --shell /bin/bash vagrant
echo vagrant:vagrant | chroot "$root" /usr/sbin/chpasswd
echo "vagrant ALL=(ALL) NOPASSWD: ALL" > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$insecure_key" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" /usr/bin/apt-get clean
# Fresh package lists: a new box installs without `apt-get update` first (older ones refresh theirs).
chroot "$root" /usr/bin/apt-get -qq update

echo "build-box: install extlinux (whole disk, no partition table)"
mkdir -p "$root/boot/extlinux"
cat > "$root/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
TIMEOUT 1
PROMPT 0
LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=UUID=$uuid ro net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0,115200n8
EOF
[ -e "$root/vmlinuz" ] && [ -e "$root/initrd.img" ] || die "the kernel's /vmlinuz and /initrd.img links are missing"
extlinux --install "$root/boot/extlinux" > /dev/null
sync
umount "$root"

echo "build-box: write the box"
qemu-img convert -O qcow2 "$work/disk.raw" "$work/box.img"
cat > "$work/metadata.json" <<EOF
{"provider": "libvirt", "format": "qcow2", "virtual_size": $disk_gb}
EOF
cat > "$work/Vagrantfile" <<EOF
# Built by celery-chaos-lab's tools/build-box.sh: Debian 12, whole-disk ext4 booted by extlinux.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "$driver"
    libvirt.disk_bus = "virtio"
  end
end
EOF
mkdir -p "$(dirname "$output")"
tar -C "$work" -cf "$output.tmp" metadata.json Vagrantfile box.img
mv "$output.tmp" "$output"
echo "build-box: $output ($(du -h "$output" | cut -f1), libvirt driver $driver)"
if $add; then
    vagrant box add --force --name "$name" "$output"
fi
