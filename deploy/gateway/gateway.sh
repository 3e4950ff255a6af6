#!/bin/sh
# Gateway artefacts, built and tested inside Debian target roots (docs/gateway.md says why).
#
#   deploy/gateway/gateway.sh host-deps           debootstrap, qemu-user-static, binfmt_misc (root)
#   deploy/gateway/gateway.sh root ARCH           .gateway/root-ARCH: Debian bookworm for ARCH
#   deploy/gateway/gateway.sh build ARCH          wheel + [edge] wheelhouse -> build/gateway/ARCH/
#   deploy/gateway/gateway.sh deb ARCH            build/gateway/lienwatch-agent_VERSION_ARCH.deb
#   deploy/gateway/gateway.sh run ARCH CMD...     CMD inside the root (with /proc, /dev mounted)
#   deploy/gateway/gateway.sh edge-tests ARCH ARGS  pytest ARGS in the root, sources compiled there
#
# ARCH is a Debian architecture: amd64, arm64 or armhf. A foreign root runs under qemu-user
# through binfmt_misc (qemu-user-static registers its interpreters with the F flag, so the
# emulator is opened once by the kernel and works inside the chroot without being copied there).
# Everything is written below .gateway/ and build/gateway/ (both ignored by git).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state="$repo/.gateway"
out="$repo/build/gateway"
suite=bookworm
mirror="${GATEWAY_MIRROR:-http://deb.debian.org/debian}"
version="${GATEWAY_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n1)-1}"
# What the root needs to build the Cython extensions and run the agent and its tests.
packages=python3,python3-venv,python3-dev,gcc,libc6-dev,openssl,ca-certificates

log() { printf '%s gateway: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'gateway: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "building target roots needs root (debootstrap, chroot, mount): run as root"
}

host_deps() {
    need_root
    missing=""
    command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
    [ -x /usr/bin/qemu-aarch64-static ] || missing="$missing qemu-user-static"
    command -v update-binfmts >/dev/null 2>&1 || missing="$missing binfmt-support"
    command -v dpkg-deb >/dev/null 2>&1 || missing="$missing dpkg"
    if [ -n "$missing" ]; then
        log "installing$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $missing
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    for emulator in aarch64 arm; do
        if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$emulator" ]; then
            update-binfmts --enable "qemu-$emulator" >/dev/null 2>&1 || true
        fi
        [ -e "/proc/sys/fs/binfmt_misc/qemu-$emulator" ] || die "binfmt_misc has no qemu-$emulator entry"
        grep -q '^flags: .*F' "/proc/sys/fs/binfmt_misc/qemu-$emulator" \
            || die "qemu-$emulator is registered without the F flag: it would not run inside a chroot"
    done
}

check_arch() {
    case "$1" in
        amd64|arm64|armhf) ;;
        *) die "architecture '$1' is not one of amd64, arm64, armhf" ;;
    esac
}

make_root() {  # make_root ARCH
    arch="$1" root="$state/root-$1"
    check_arch "$arch"
    if [ -f "$root/.lienwatch-root" ]; then
        return
    fi
    host_deps
    rm -rf "$root"
    mkdir -p "$state"
    log "debootstrap $suite $arch into $root (minbase + $packages)"
    started=$(date +%s)
    debootstrap --arch="$arch" --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
        > "$state/debootstrap-$arch.log" 2>&1 || { tail -n 20 "$state/debootstrap-$arch.log" >&2; die "debootstrap failed"; }
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    echo "$(( $(date +%s) - started ))" > "$root/.lienwatch-root"
    log "root $arch made in $(cat "$root/.lienwatch-root") s"
}

mounted() { grep -q " $1 " /proc/mounts; }

in_root() {  # in_root ARCH CMD... : CMD in the root's chroot, /proc /dev /dev/pts mounted for it
    arch="$1" root="$state/root-$1"
    shift
    make_root "$arch"
    mounted "$root/proc" || mount -t proc proc "$root/proc"
    mounted "$root/dev" || mount --bind /dev "$root/dev"
    mounted "$root/dev/pts" || mount --bind /dev/pts "$root/dev/pts"
    mounted "$root/dev/shm" || mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # debootstrap's minbase has no /etc/hosts: without it `localhost` does not resolve in the root.
    grep -qs localhost "$root/etc/hosts" || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n' \
        >> "$root/etc/hosts"
    # pip in the root trusts what the host trusts (a proxy's CA on this host's bundle included).
    host_ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
    [ -f "$host_ca" ] && cp "$host_ca" "$root/etc/ssl/certs/host-ca-bundle.crt"
    set +e
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TMPDIR=/tmp \
        PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
        ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} chroot "$root" "$@"
    code=$?
    set -e
    for path in "$root/dev/shm" "$root/dev/pts" "$root/dev" "$root/proc"; do
        mounted "$path" && umount "$path"
    done
    return $code
}

build() {  # build ARCH: the lienwatch wheel and the [edge] wheelhouse, built in the target root
    arch="$1" root="$state/root-$1"
    make_root "$arch"
    rm -rf "$root/src" "$root/out"
    mkdir -p "$root/src" "$root/out"
    # The checkout as git sees it (tracked and new files, nothing ignored: no .venv, no build/).
    (cd "$repo" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$root/src"
    log "building the wheel and the [edge] wheelhouse for $arch"
    started=$(date +%s)
    in_root "$arch" /bin/sh -eu -c '
        test -x /opt/build-venv/bin/pip || python3 -m venv /opt/build-venv
        cd /src
        # No debug info and stripped: the extensions are a few hundred kB instead of several MB.
        CFLAGS=-g0 LDFLAGS=-s /opt/build-venv/bin/pip wheel --quiet --no-deps -w /out/dist .
        wheel=$(ls /out/dist/lienwatch-*.whl)
        /opt/build-venv/bin/pip wheel --quiet -w /out/wheelhouse "lienwatch[edge] @ file://$wheel"
    '
    rm -rf "$out/$arch"
    mkdir -p "$out/$arch"
    cp -r "$root/out/dist" "$root/out/wheelhouse" "$out/$arch/"
    # The config template of the sources just built (the package ships it: it matches their schema).
    cp "$root/src/deploy/agent.example.toml" "$out/$arch/agent.example.toml"
    echo "$(( $(date +%s) - started ))" > "$out/$arch/build-seconds"
    log "$arch wheel and wheelhouse in $out/$arch ($(cat "$out/$arch/build-seconds") s)"
}

deb() {  # deb ARCH: the agent package from the wheelhouse, installed into /opt/lienwatch in the root
    arch="$1" root="$state/root-$1"
    [ -f "$out/$arch/agent.example.toml" ] || build "$arch"
    rm -rf "$root/out" && mkdir -p "$root/out" && cp -r "$out/$arch/wheelhouse" "$root/out/"
    log "installing the agent into /opt/lienwatch in the $arch root to package it"
    in_root "$arch" /bin/sh -eu -c '
        rm -rf /opt/lienwatch
        python3 -m venv --without-pip /opt/lienwatch
        /opt/build-venv/bin/pip --python /opt/lienwatch/bin/python install --quiet --no-index \
            --find-links /out/wheelhouse "lienwatch[edge]"
        # Flash is scarce: no test suites of the dependencies (numpy ships its own), no C headers.
        site=$(ls -d /opt/lienwatch/lib/python3*/site-packages)
        find "$site" -depth -type d \( -name tests -o -name testing -o -name include \) \
            -path "*/numpy/*" -exec rm -rf {} +
        find "$site" -depth -type d -name tests -exec rm -rf {} +
        find "$site/cython_ext" "$site/protocol" -name "*.c" -delete  # Cython output, compiled already
        # The agent runs with ProtectSystem=strict: it cannot write bytecode, so ship it.
        /opt/lienwatch/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/lienwatch/lib
        /opt/lienwatch/bin/lienwatch --version
    '
    stage="$out/stage-$arch"
    rm -rf "$stage"
    mkdir -p "$stage/opt" "$stage/DEBIAN" "$stage/lib/systemd/system" "$stage/usr/bin" \
        "$stage/etc/logrotate.d" "$stage/usr/lib/systemd/journald.conf.d" "$stage/usr/share/doc/lienwatch-agent"
    cp -a "$root/opt/lienwatch" "$stage/opt/"
    mkdir -p "$stage/opt/lienwatch/share"
    cp "$out/$arch/agent.example.toml" "$stage/opt/lienwatch/share/agent.example.toml"
    # The agent unit, and the two root units plus the polkit rule that let the unprivileged agent
    # suspend or power off the board with an RTC wake (docs/power.md).
    mkdir -p "$stage/usr/share/polkit-1/rules.d"
    cp "$repo/deploy/systemd/lienwatch-agent.service" "$repo/deploy/systemd/lienwatch-suspend@.service" \
        "$repo/deploy/systemd/lienwatch-off@.service" "$stage/lib/systemd/system/"
    cp "$repo/deploy/polkit/50-lienwatch-sleep.rules" "$stage/usr/share/polkit-1/rules.d/"
    ln -s /opt/lienwatch/bin/lienwatch "$stage/usr/bin/lienwatch"
    cp "$here/debian/logrotate" "$stage/etc/logrotate.d/lienwatch-agent"
    cp "$here/debian/journald.conf" "$stage/usr/lib/systemd/journald.conf.d/lienwatch-agent.conf"
    cp "$repo/docs/agent.md" "$repo/docs/gateway.md" "$stage/usr/share/doc/lienwatch-agent/"
    for script in postinst prerm postrm; do
        install -m 0755 "$here/debian/$script" "$stage/DEBIAN/$script"
    done
    echo /etc/logrotate.d/lienwatch-agent > "$stage/DEBIAN/conffiles"
    installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
    python_dep="python3 (>= 3.11), python3 (<< 3.12)"
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_KB@/$installed_kb/" \
        -e "s/@PYTHON@/$python_dep/" "$here/debian/control" > "$stage/DEBIAN/control"
    package="$out/lienwatch-agent_${version}_$arch.deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$package" >/dev/null
    rm -rf "$stage"
    log "$package: $(du -k "$package" | cut -f1) kB, installed $installed_kb kB"
}

edge_tests() {  # edge_tests ARCH [PYTEST ARGS]: the edge test subset, compiled and run in the root
    arch="$1" root="$state/root-$1"
    shift
    [ -d "$out/$arch/wheelhouse" ] || build "$arch"
    rm -rf "$root/src" "$root/out" && mkdir -p "$root/src" "$root/out"
    (cd "$repo" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$root/src"
    cp -r "$out/$arch/wheelhouse" "$root/out/"
    log "edge tests in the $arch root: $*"
    started=$(date +%s)
    # The sources compiled in place for the target (the same setup.py as the wheel), the wheelhouse's
    # dependencies for it, and the test tools; mosquitto for the tests that talk to a broker.
    in_root "$arch" /bin/sh -eu -c '
        command -v mosquitto >/dev/null || { apt-get update -qq && \
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; }
        test -x /opt/test-venv/bin/pytest || python3 -m venv /opt/test-venv
        /opt/test-venv/bin/pip install --quiet --find-links /out/wheelhouse \
            "$(ls /out/wheelhouse/lienwatch-*.whl)[edge]" "Cython>=3.0" "setuptools>=69" \
            pytest pytest-timeout hypothesis "pynmeagps>=1.0.40" "obd==0.7.3" msgpack pycddl
        /opt/test-venv/bin/pip uninstall --quiet -y lienwatch
        # The tests import the checkout (tests/ and deploy/ are not in the wheel), with the
        # extensions of the wheel just built for this architecture put beside their sources.
        cd /src && /opt/test-venv/bin/python -c "
import glob, zipfile
wheel = zipfile.ZipFile(glob.glob(\"/out/wheelhouse/lienwatch-*.whl\")[0])
for name in wheel.namelist():
    if name.endswith(\".so\"):
        wheel.extract(name, \"/src\")
"
        /opt/test-venv/bin/python -c "import platform, cython_ext.ring as r; print(platform.machine(), r.__file__)"
        /opt/test-venv/bin/python -m pytest -q -p no:cacheprovider "$@"
    ' sh "$@"
    log "edge tests in the $arch root took $(( $(date +%s) - started )) s"
}

command="${1:-}"
[ -n "$command" ] || die "usage: $0 host-deps | root ARCH | build ARCH | deb ARCH | run ARCH CMD..."
shift
case "$command" in
    host-deps) host_deps ;;
    root) need_root; make_root "$1" ;;
    build) need_root; check_arch "$1"; build "$1" ;;
    deb) need_root; check_arch "$1"; deb "$1" ;;
    run) need_root; arch="$1"; shift; in_root "$arch" "$@" ;;
    edge-tests) need_root; arch="$1"; shift; check_arch "$arch"; edge_tests "$arch" "$@" ;;
    *) die "unknown command '$command'" ;;
esac
