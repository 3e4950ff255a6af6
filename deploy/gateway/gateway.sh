#!/bin/sh
# Gateway artefacts for Debian bookworm targets (docs/gateway.md says how and why this way).
#
#   deploy/gateway/gateway.sh host-deps           debootstrap, qemu-user-static, binfmt_misc, cross gcc (root)
#   deploy/gateway/gateway.sh root ARCH           $GATEWAY_ROOTS/root-ARCH: Debian bookworm for ARCH
#   deploy/gateway/gateway.sh sdist-wheels ARCH   the dependencies PyPI has no ARCH wheel of -> $GATEWAY_ROOTS/wheels-ARCH
#   deploy/gateway/gateway.sh build ARCH          wheel + [edge] wheelhouse -> build/gateway/ARCH/
#   deploy/gateway/gateway.sh deb ARCH            build/gateway/lienwatch-agent_VERSION_ARCH.deb
#   deploy/gateway/gateway.sh run ARCH CMD...     CMD inside the root (with /proc, /dev mounted)
#   deploy/gateway/gateway.sh edge-tests ARCH ARGS  pytest ARGS in the root with the wheel's extensions
#   deploy/gateway/gateway.sh clean               unmount the roots, remove .gateway/ and build/gateway/
#                                                 (GATEWAY_CLEAN_ROOTS=1: the cached roots too)
#
# ARCH is a Debian architecture: amd64, arm64 or armhf. The wheel's extensions are compiled on this
# host by Debian's cross gcc with the root as sysroot and the root's _sysconfigdata (GATEWAY_BUILD=root:
# by the root's own gcc instead, emulated for a foreign root: slow, kept as the oracle); pip in the
# root resolves the wheelhouse. A foreign root runs under qemu-user through binfmt_misc
# (qemu-user-static registers its interpreters with the F flag, so the emulator is opened once by
# the kernel and works inside the chroot without being copied there). The roots are per machine,
# in $GATEWAY_ROOTS (/var/cache/lienwatch/gateway); the rest below .gateway/ and build/gateway/
# (both ignored by git).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state="$repo/.gateway"
# The target roots are per machine, not per clone: debootstrap runs once, a fresh clone reuses them.
roots="${GATEWAY_ROOTS:-/var/cache/lienwatch/gateway}"
out="$repo/build/gateway"
suite=bookworm
mirror="${GATEWAY_MIRROR:-http://deb.debian.org/debian}"
version="${GATEWAY_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n1)-1}"
# What the root needs to build the Cython extensions and run the agent and its tests.
# The root's python3-dev and libc6-dev are also the sysroot of the host's cross compiler.
packages=python3,python3-venv,python3-dev,gcc,libc6-dev,openssl,ca-certificates
root_packages() {  # root_packages ARCH: debootstrap's --include for that root
    list="$packages"
    for pair in $(debian_provided "$1") $(debian_test_packages "$1"); do
        list="$list,${pair#*:}"
    done
    for package in $(debootstrap_extra "$1"); do
        list="$list,$package"
    done
    echo "$list"
}

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
    command -v flock >/dev/null 2>&1 || missing="$missing util-linux"
    # The cross compilers for the extensions (the roots' headers and libc are their sysroots).
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing="$missing gcc-aarch64-linux-gnu"
    command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || missing="$missing gcc-arm-linux-gnueabihf"
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
    arch="$1" root="$roots/root-$1"
    check_arch "$arch"
    if [ -f "$root/.lienwatch-root" ]; then
        return
    fi
    host_deps
    mkdir -p "$roots"
    # One debootstrap at a time per root, whichever clone asks (flock on the cache's lock file).
    exec 9> "$roots/root-$arch.lock"
    flock 9
    if [ -f "$root/.lienwatch-root" ]; then
        exec 9>&-
        return
    fi
    umount_root "$root"
    rm -rf --one-file-system "$root"
    include=$(root_packages "$arch")
    log "debootstrap $suite $arch into $root (minbase + $include)"
    started=$(date +%s)
    debootstrap --arch="$arch" --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
        > "$roots/debootstrap-$arch.log" 2>&1 || { tail -n 20 "$roots/debootstrap-$arch.log" >&2; die "debootstrap failed"; }
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    echo "$(( $(date +%s) - started ))" > "$root/.lienwatch-root"
    exec 9>&-
    log "root $arch made in $(cat "$root/.lienwatch-root") s"
}

mounted() { grep -q " $1 " /proc/mounts; }

umount_root() {  # umount_root ROOT: whatever in_root (or a failed debootstrap) mounted there
    for path in "$1/dev/shm" "$1/dev/pts" "$1/dev" "$1/proc" "$1/sys"; do
        if mounted "$path"; then umount "$path" || umount -l "$path"; fi
    done
}

in_root() {  # in_root ARCH CMD... : CMD in the root's chroot, /proc /dev /dev/pts mounted for it
    arch="$1" root="$roots/root-$1"
    shift
    make_root "$arch"
    # One command at a time in a root (the roots are shared by the clones on this machine): the
    # mounts below are made and undone around each.
    exec 8> "$roots/root-$arch.use"
    flock 8
    trap 'umount_root "$root"' EXIT
    trap 'umount_root "$root"; exit 130' INT TERM
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
    umount_root "$root"
    trap - EXIT INT TERM
    exec 8>&-
    return $code
}

triplet() {  # triplet ARCH: Debian's multiarch triplet (the cross compiler's prefix)
    case "$1" in
        amd64) echo x86_64-linux-gnu ;;
        arm64) echo aarch64-linux-gnu ;;
        armhf) echo arm-linux-gnueabihf ;;
    esac
}

wheel_machine() {  # wheel_machine ARCH: the wheel's platform tag as pip on that machine wants it
    case "$1" in
        amd64) echo x86_64 ;;
        arm64) echo aarch64 ;;
        armhf) echo armv7l ;;
    esac
}

# What Debian provides on an architecture instead of PyPI, as PYPI-NAME:DEBIAN-PACKAGE pairs: PyPI
# has no armv7 wheel of numpy or pynacl, and compiling them under emulation takes hours (numpy) or
# needs libsodium's build (pynacl); Debian's PyNaCl needs Debian's cffi (its pip metadata asks for
# the cffi distribution). Everything else on armhf has an armv7l or a pure-Python wheel.
debian_provided() {
    case "$1" in
        armhf) echo numpy:python3-numpy pynacl:python3-nacl cffi:python3-cffi ;;
        *) echo "" ;;
    esac
}

# What the tests and bench/gateway.py need in that root from Debian for the same reason (msgpack:
# python-can's udp_multicast, the emulated CAN bus).
debian_test_packages() {
    case "$1" in
        armhf) echo msgpack:python3-msgpack ;;
        *) echo "" ;;
    esac
}

# debootstrap does not resolve virtual packages: python3-cffi's python3-pycparser depends on
# python3-ply-lex-3.10 and python3-ply-yacc-3.10, which python3-ply provides (without it the
# armhf debootstrap fails configuring python3-pycparser).
debootstrap_extra() {
    case "$1" in
        armhf) echo python3-ply ;;
        *) echo "" ;;
    esac
}

debian_names() {  # debian_names PAIRS...: the Debian package of each pair
    for pair in "$@"; do printf '%s ' "${pair#*:}"; done
}

pypi_names() {  # pypi_names PAIRS...: the PyPI name of each pair
    for pair in "$@"; do printf '%s ' "${pair%%:*}"; done
}

host_python="${GATEWAY_HOST_PYTHON:-$repo/.venv/bin/python}"

# PyPI packages with no wheel for an architecture, built here from their sdist once per machine
# (cached in $roots/wheels-ARCH, which the root's pip download sees through --find-links), as
# NAME==VERSION. cbor2 6 is a Rust (PyO3) extension with no armv7 wheel on PyPI; it is
# cross-compiled on the host by Debian's rustc-web with the crates Debian packages (crates.io is
# not reachable from here or from CI). The newest cbor2 that those crates build: 6.1.2 needs
# pyo3 0.28 (Debian unstable's librust-pyo3-dev, with which Debian builds its own
# python3-cbor2 6.1.2); 6.2 and later need pyo3 0.30, which Debian does not have yet.
built_from_sdist() {
    case "$1" in
        armhf) echo "cbor2==${GATEWAY_CBOR2_ARMHF:-6.1.2}" ;;
        *) echo "" ;;
    esac
}

rust_target() {  # rust_target ARCH: Rust's target triple
    case "$1" in
        amd64) echo x86_64-unknown-linux-gnu ;;
        arm64) echo aarch64-unknown-linux-gnu ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
    esac
}

# Rust for the sdist builds: Debian's rustc-web and cargo-web (bookworm-security) on the host, and
# in $roots/rust (per machine) what apt fetches for it without installing anything on the host: the
# target's Rust standard library (libstd-rust-web-dev of the target architecture, the host
# compiler's exact version) and the crates (Debian's librust-*-dev source packages from
# $GATEWAY_CRATES_SUITE), unpacked into a directory registry that replaces crates.io for cargo.
rust="$roots/rust"
crates_suite="${GATEWAY_CRATES_SUITE:-sid}"
security_mirror="${GATEWAY_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

rust_apt() {  # rust_apt COMMAND ARGS...: apt-get/apt-cache on $rust/apt's own sources, lists and (empty) status
    tool="$1"
    shift
    "$tool" -o Dir::Etc::SourceList="$rust/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$rust/apt/lists" -o Dir::Cache="$rust/apt/cache" \
        -o Dir::State::status="$rust/apt/status" -o Acquire::Languages=none -o APT::Sandbox::User=root \
        -o APT::Architectures::="$(dpkg --print-architecture)" -o APT::Architectures::=armhf \
        -o APT::Architectures::=arm64 "$@"
}

host_rust() {  # host_rust: Debian's rustc-web and cargo-web on the host, private apt lists for the rest
    if ! dpkg -s rustc-web cargo-web >/dev/null 2>&1; then
        log "installing rustc-web cargo-web"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
            --no-install-recommends rustc-web cargo-web
    fi
    mkdir -p "$rust/apt/lists/partial" "$rust/apt/cache/archives/partial" "$rust/registry"
    key=/usr/share/keyrings/debian-archive-keyring.gpg
    cat > "$rust/apt/sources.list.new" <<SOURCES
deb [arch=armhf,arm64 signed-by=$key] $mirror $suite main
deb [arch=armhf,arm64 signed-by=$key] $security_mirror $suite-security main
deb [arch=$(dpkg --print-architecture) signed-by=$key] $mirror $crates_suite main
SOURCES
    mv "$rust/apt/sources.list.new" "$rust/apt/sources.list"
    : > "$rust/apt/status"
    # Fresh lists once a day at most (the crates suite moves).
    if [ -z "$(find "$rust/apt/lists" -maxdepth 1 -name '*Packages*' -mtime -1 | head -n1)" ]; then
        rust_apt apt-get update -qq || die "apt-get update of $rust/apt failed"
    fi
}

rust_std() {  # rust_std ARCH: $rust/sysroot-ARCH, the host's Rust libraries beside the target's
    arch="$1" target=$(rust_target "$1")
    std_version=$(dpkg-query -W -f '${Version}' rustc-web)
    sysroot="$rust/sysroot-$arch"
    if [ "$(cat "$sysroot/.version" 2>/dev/null)" = "$std_version" ]; then
        return
    fi
    log "fetching libstd-rust-web-dev:$arch $std_version (the $target standard library)"
    tmp=$(mktemp -d "$rust/std.XXXXXX")
    (cd "$tmp" && rust_apt apt-get download -qq "libstd-rust-web-dev:$arch=$std_version") \
        || die "Debian has no libstd-rust-web-dev:$arch $std_version (the host's rustc-web)"
    dpkg-deb -x "$tmp"/libstd-rust-web-dev_*.deb "$tmp/x"
    [ -d "$tmp/x/usr/lib/rustlib/$target/lib" ] || die "libstd-rust-web-dev:$arch has no $target libraries"
    rm -rf "$sysroot" && mkdir -p "$sysroot/lib/rustlib"
    mv "$tmp/x/usr/lib/rustlib/$target" "$sysroot/lib/rustlib/"
    host_target=$(/usr/bin/rustc -vV | sed -n 's/^host: //p')
    ln -s "/usr/lib/rustlib/$host_target" "$sysroot/lib/rustlib/$host_target"
    echo "$std_version" > "$sysroot/.version"
    rm -rf "$tmp"
}

# rust_crates CARGO.LOCK: Debian's packages of the crates the lock names and of what those need, in
# $rust/registry (deploy/gateway/crates.py picks them); prints PACKAGE=VERSION of each.
rust_crates() {
    tmp=$(mktemp -d "$rust/crates.XXXXXX")
    # What the crates suite offers: PACKAGE VERSION of each librust-*-dev.
    rust_apt apt-cache dumpavail \
        | awk '/^Package: librust-/ { p = $2 } /^Version: / && p { print p, $2; p = "" }' > "$tmp/index"
    "$host_python" "$here/crates.py" locked "$tmp/index" "$1" > "$tmp/wanted" \
        || die "the crates of $1 are not all in Debian $crates_suite"
    : > "$tmp/fetched"
    mkdir -p "$tmp/debs" "$tmp/x/usr/share/cargo/registry"
    while :; do
        LC_ALL=C sort -u "$tmp/wanted" | LC_ALL=C comm -23 - "$tmp/fetched" > "$tmp/new"
        [ -s "$tmp/new" ] || break
        rm -f "$tmp/debs"/*.deb
        # shellcheck disable=SC2046
        (cd "$tmp/debs" && rust_apt apt-get download -qq $(cat "$tmp/new") 2>&1 | grep -v unsandboxed >&2 || true)
        before=$(ls "$tmp/x/usr/share/cargo/registry" | tr '\n' ' ')
        for package in $(cat "$tmp/new"); do
            deb=$(ls "$tmp/debs/${package}_"*.deb 2>/dev/null) || die "apt-get download of $package failed"
            dpkg-deb -x "$deb" "$tmp/x"
            dpkg-deb -f "$deb" Package Version | sed 's/^[A-Za-z]*: //' | paste -sd= -
        done
        LC_ALL=C sort -u "$tmp/fetched" "$tmp/new" -o "$tmp/fetched"
        added=""
        for crate_dir in "$tmp/x/usr/share/cargo/registry"/*; do
            case " $before " in *" $(basename "$crate_dir") "*) ;; *) added="$added $crate_dir" ;; esac
        done
        # shellcheck disable=SC2086
        "$host_python" "$here/crates.py" needs "$tmp/index" $added >> "$tmp/wanted" \
            || die "what Debian's crates need is not all in Debian $crates_suite"
    done
    cp -a "$tmp"/x/usr/share/cargo/registry/. "$rust/registry/"
    rm -rf "$tmp"
}

sdist_wheels() {  # sdist_wheels ARCH: $roots/wheels-ARCH has a wheel of each of built_from_sdist ARCH
    arch="$1" root="$roots/root-$1"
    cache="$roots/wheels-$arch"
    todo=""
    for requirement in $(built_from_sdist "$arch"); do
        name="${requirement%%==*}" want="${requirement#*==}"
        ls "$cache/$name-$want-"*"-linux_$(wheel_machine "$arch").whl" >/dev/null 2>&1 || todo="$todo $requirement"
    done
    [ -n "$todo" ] || return 0
    mkdir -p "$rust" "$cache"
    exec 7> "$rust/lock"
    flock 7
    host_rust
    rust_std "$arch"
    target=$(rust_target "$arch") triple=$(triplet "$arch")
    target_env=$(echo "$target" | tr 'a-z-' 'A-Z_')
    target_version=$(cd "$root/usr/lib" && ls -d python3.* | sort -V | tail -n1)
    sysconfigdata=$(cd "$root/usr/lib/$target_version" && ls _sysconfigdata__*"$triple".py | head -n1)
    # The build tools (setuptools-rust and the rest of the sdist's build requirements) in a venv of
    # the host's Python; the backend runs with the target's build configuration, as cross_wheel's does.
    venv="$rust/venv"
    "$venv/bin/python" -c 'import setuptools_rust, setuptools_scm' 2>/dev/null || {
        rm -rf "$venv"
        "$host_python" -m venv "$venv"
        "$venv/bin/pip" install --quiet "setuptools>=77" setuptools-rust "setuptools_scm[toml]>=6.4" wheel
    }
    for requirement in $todo; do
        name="${requirement%%==*}" want="${requirement#*==}"
        wheel_started=$(date +%s)
        work=$(mktemp -d "$rust/build.XXXXXX")
        log "building $requirement for $arch from its sdist (Debian's rustc-web, target $target)"
        "$venv/bin/pip" download --quiet --no-deps --no-binary :all: -d "$work" "$requirement"
        tar -xzf "$work/$name-$want.tar.gz" -C "$work"
        src="$work/$name-$want"
        # The lock file pins crates.io's versions; cargo resolves against Debian's instead.
        : > "$work/crates.txt"
        for lock in $(find "$src" -name Cargo.lock); do
            rust_crates "$lock" >> "$work/crates.txt"
            rm -f "$lock"
        done
        mkdir -p "$work/cargo-home"
        cat > "$work/cargo-home/config.toml" <<CONFIG
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "$rust/registry"
[net]
offline = true
CONFIG
        mkdir -p "$work/conf" && cp "$root/usr/lib/$target_version/$sysconfigdata" "$work/conf/"
        (cd "$src" && env -i PATH=/usr/bin:/bin HOME="$work" LANG=C.UTF-8 \
            CARGO_HOME="$work/cargo-home" CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc \
            CARGO_TARGET_DIR="$work/target" CARGO_BUILD_TARGET="$target" \
            "CARGO_TARGET_${target_env}_LINKER=$triple-gcc" \
            "CARGO_TARGET_${target_env}_RUSTFLAGS=--sysroot=$rust/sysroot-$arch -C strip=symbols" \
            PYO3_CROSS_LIB_DIR="$root/usr/lib/$target_version" \
            _PYTHON_SYSCONFIGDATA_NAME="${sysconfigdata%.py}" PYTHONPATH="$work/conf" \
            _PYTHON_HOST_PLATFORM="linux-$(wheel_machine "$arch")" \
            nice -n 10 "$venv/bin/python" -c '
import sys
from setuptools import build_meta
print(build_meta.build_wheel(sys.argv[1]))
' "$work/dist" > "$work/build.log" 2>&1) \
            || { tail -n 40 "$work/build.log" >&2; die "building $requirement for $arch failed ($work/build.log)"; }
        wheel=$(ls "$work/dist/$name-$want-"*.whl)
        case "$wheel" in
            *-cp3*-linux_"$(wheel_machine "$arch")".whl) ;;
            *) die "the $name build made $wheel, not a linux_$(wheel_machine "$arch") wheel" ;;
        esac
        mv "$wheel" "$cache/"
        echo "$(( $(date +%s) - wheel_started ))" > "$cache/$(basename "$wheel").seconds"
        log "$(basename "$wheel") in $(cat "$cache/$(basename "$wheel").seconds") s, crates from Debian $crates_suite: $(tr '\n' ' ' < "$work/crates.txt")"
        rm -rf "$work"
    done
    exec 7>&-
}

copy_sources() {  # copy_sources DIR: the checkout as git sees it (tracked and new files, nothing ignored)
    mkdir -p "$1"
    (cd "$repo" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$1"
}

cross_wheel() {  # cross_wheel ARCH DIST: the lienwatch wheel, its extensions compiled on the host
    arch="$1" root="$roots/root-$1" dist="$2"
    triple=$(triplet "$arch")
    cc="$triple-gcc"
    command -v "$cc" >/dev/null 2>&1 || die "no cross compiler $cc (gateway.sh host-deps installs it)"
    [ -x "$host_python" ] || die "no host Python $host_python (make install)"
    # The target's build-time configuration (EXT_SUFFIX, CC, CFLAGS, LDSHARED) and headers.
    target_version=$(cd "$root/usr/lib" && ls -d python3.* | sort -V | tail -n1)
    sysconfigdata=$(cd "$root/usr/lib/$target_version" && ls _sysconfigdata__*"$triple".py | head -n1)
    [ -n "$sysconfigdata" ] || die "the $arch root has no _sysconfigdata for $triple (python3-dev)"
    host_version=$("$host_python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
    [ "$host_version" = "$target_version" ] \
        || die "the host's $host_version cannot build extensions for the root's $target_version"
    conf="$state/sysconfig-$arch"
    rm -rf "$conf" && mkdir -p "$conf"
    cp "$root/usr/lib/$target_version/$sysconfigdata" "$conf/"
    # One source tree for all architectures: the Cython output is the same C for each (cythonize
    # skips a .pyx whose .c is newer; tar keeps the checkout's times), only the compiler changes.
    src="$state/src"
    copy_sources "$src"
    rm -rf "$src/build" "$src"/*.egg-info
    # What the checkout no longer has goes (a removed module must not be built), Cython's output stays.
    (cd "$src" && find . -type f ! -name '*.c' | sort) > "$state/src-files"
    (cd "$repo" && git ls-files -co --exclude-standard | sed 's|^|./|' | sort) > "$state/repo-files"
    comm -23 "$state/src-files" "$state/repo-files" | (cd "$src" && xargs -r rm -f)
    for generated in "$src"/cython_ext/*.c "$src"/protocol/*.c; do
        [ -f "${generated%.c}.pyx" ] || rm -f "$generated"
    done
    find "$src/cython_ext" "$src/protocol" -name '*.so' -delete
    log "cross-compiling the extensions for $arch on the host ($cc, sysroot $root)"
    (cd "$src" && env _PYTHON_SYSCONFIGDATA_NAME="${sysconfigdata%.py}" PYTHONPATH="$conf" \
        _PYTHON_HOST_PLATFORM="linux-$(wheel_machine "$arch")" \
        CC="$cc --sysroot=$root" \
        CFLAGS="-g0 -I$root/usr/include/$target_version -I$root/usr/include/$triple/$target_version" \
        LDFLAGS="-s" \
        nice -n 10 "$host_python" setup.py --quiet bdist_wheel --dist-dir "$dist" >"$state/cross-$arch.log" 2>&1) \
        || { tail -n 30 "$state/cross-$arch.log" >&2; die "cross build for $arch failed ($state/cross-$arch.log)"; }
    wheel=$(ls "$dist"/lienwatch-*.whl)
    case "$wheel" in
        *-cp3*-linux_"$(wheel_machine "$arch")".whl) ;;
        *) die "the cross build made $wheel, not a linux_$(wheel_machine "$arch") wheel" ;;
    esac
    cp "$src/deploy/agent.example.toml" "$root/out/agent.example.toml"
}

root_wheel() {  # root_wheel ARCH: the lienwatch wheel built in the root by its own (emulated) gcc
    arch="$1" root="$roots/root-$1"
    rm -rf "$root/src" && copy_sources "$root/src"
    in_root "$arch" /bin/sh -eu -c '
        cd /src
        # No debug info and stripped: the extensions are a few hundred kB instead of several MB.
        CFLAGS=-g0 LDFLAGS=-s /opt/build-venv/bin/pip wheel --quiet --no-deps -w /out/dist .
    '
    cp "$root/src/deploy/agent.example.toml" "$root/out/agent.example.toml"
}

build() {  # build ARCH: the lienwatch wheel and the [edge] wheelhouse for ARCH
    arch="$1" root="$roots/root-$1"
    method="${GATEWAY_BUILD:-cross}"
    case "$method" in cross|root) ;; *) die "GATEWAY_BUILD is cross or root, not '$method'" ;; esac
    make_root "$arch"
    # The dependencies PyPI has no wheel of for this architecture, built from their sdists (cached).
    sdist_started=$(date +%s)
    sdist_wheels "$arch"
    sdist_seconds=$(( $(date +%s) - sdist_started ))
    rm -rf "$root/out"
    mkdir -p "$root/out/dist" "$root/out/wheelhouse" "$root/out/prebuilt"
    for requirement in $(built_from_sdist "$arch"); do
        cp "$roots/wheels-$arch/${requirement%%==*}-${requirement#*==}-"*"-linux_$(wheel_machine "$arch").whl" "$root/out/prebuilt/"
    done
    started=$(date +%s)
    # pip in the root: the target's Python resolves and downloads the target's wheels.
    debian=$(debian_names $(debian_provided "$arch") $(debian_test_packages "$arch"))
    in_root "$arch" /bin/sh -eu -c "
        test -x /opt/build-venv/bin/pip || python3 -m venv /opt/build-venv
        # A root made before a package joined the list gets it now.
        for package in $debian; do
            dpkg -s \$package >/dev/null 2>&1 || missing=\"\${missing:-} \$package\"
        done
        if [ -n \"\${missing:-}\" ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \$missing >/dev/null
        fi
    "
    venv_seconds=$(( $(date +%s) - started ))
    if [ "$method" = cross ]; then
        cross_wheel "$arch" "$root/out/dist"
    else
        log "building the wheel in the $arch root (its own gcc; emulated for a foreign root)"
        root_wheel "$arch"
    fi
    wheel_seconds=$(( $(date +%s) - started - venv_seconds ))
    wheel=$(ls "$root/out/dist"/lienwatch-*.whl)
    cp "$wheel" "$root/out/wheelhouse/"
    # The wheel's own requirements (core and [edge]), less what Debian provides on this arch.
    "$host_python" - "$wheel" "$(pypi_names $(debian_provided "$arch"))" > "$root/out/requirements.txt" <<'PY'
import re
import sys
import zipfile

wheel, skip = zipfile.ZipFile(sys.argv[1]), set(sys.argv[2].split())
meta = next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
for line in wheel.read(meta).decode().splitlines():
    if not line.startswith("Requires-Dist: "):
        continue
    requirement, _, marker = line[len("Requires-Dist: "):].partition(";")
    if marker and marker.strip() != 'extra == "edge"':
        continue
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
    if name.lower() not in skip:
        print(requirement.strip())
PY
    log "downloading the [edge] wheelhouse for $arch in the root (binary wheels only)"
    cp "$here/smoke.py" "$root/out/smoke.py"
    in_root "$arch" /bin/sh -eu -c "
        /opt/build-venv/bin/pip download --quiet --only-binary=:all: --find-links /out/prebuilt \
            -d /out/wheelhouse -r /out/requirements.txt
        # The wheelhouse installs with no index, and the extensions load and compute right here.
        rm -rf /opt/check-venv
        python3 -m venv --without-pip $(venv_flags "$arch") /opt/check-venv
        /opt/build-venv/bin/pip --python /opt/check-venv/bin/python install --quiet --no-index \
            --find-links /out/wheelhouse 'lienwatch[edge]'
        cd / && /opt/check-venv/bin/python /out/smoke.py
        rm -rf /opt/check-venv
    " > "$root/out/smoke.log" || { cat "$root/out/smoke.log" >&2; die "the $arch wheelhouse failed its check in the root"; }
    rm -rf "$out/$arch"
    mkdir -p "$out/$arch"
    cp -r "$root/out/dist" "$root/out/wheelhouse" "$out/$arch/"
    # The config template of the sources just built (the package ships it: it matches their schema).
    cp "$root/out/agent.example.toml" "$out/$arch/agent.example.toml"
    tail -n1 "$root/out/smoke.log" > "$out/$arch/smoke.json"
    echo "$method" > "$out/$arch/build-method"
    total=$(( $(date +%s) - started ))
    printf '{"sdist_wheels_s": %d, "build_venv_s": %d, "wheel_s": %d, "wheelhouse_and_check_s": %d, "total_s": %d}\n' \
        "$sdist_seconds" "$venv_seconds" "$wheel_seconds" "$(( total - venv_seconds - wheel_seconds ))" "$total" \
        > "$out/$arch/build-seconds.json"
    log "$arch: $(basename "$wheel") ($method), wheelhouse of $(ls "$out/$arch/wheelhouse" | wc -l) wheels, checked in the root: $(cat "$out/$arch/smoke.json"); $(cat "$out/$arch/build-seconds.json")"
}

only_binary() {  # only_binary ARCH: pip's option that keeps it to the wheelhouse's builds of the sdists
    names=""
    for requirement in $(built_from_sdist "$1"); do names="${names:+$names,}${requirement%%==*}"; done
    [ -n "$names" ] && echo "--only-binary=$names" || true
}

venv_flags() {  # venv_flags ARCH: Debian's numpy (armhf) is seen from the venv
    [ -n "$(debian_provided "$1")" ] && echo --system-site-packages || true
}

deb() {  # deb ARCH: the agent package from the wheelhouse, installed into /opt/lienwatch in the root
    arch="$1" root="$roots/root-$1"
    [ -f "$out/$arch/agent.example.toml" ] || build "$arch"
    rm -rf "$root/out" && mkdir -p "$root/out" && cp -r "$out/$arch/wheelhouse" "$root/out/"
    log "installing the agent into /opt/lienwatch in the $arch root to package it"
    in_root "$arch" /bin/sh -eu -c '
        rm -rf /opt/lienwatch
        python3 -m venv --without-pip '"$(venv_flags "$arch")"' /opt/lienwatch
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
    for name in $(debian_names $(debian_provided "$arch")); do
        python_dep="$python_dep, $name"
    done
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_KB@/$installed_kb/" \
        -e "s/@PYTHON@/$python_dep/" "$here/debian/control" > "$stage/DEBIAN/control"
    package="$out/lienwatch-agent_${version}_$arch.deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$package" >/dev/null
    rm -rf "$stage"
    log "$package: $(du -k "$package" | cut -f1) kB, installed $installed_kb kB"
}

edge_tests() {  # edge_tests ARCH [PYTEST ARGS]: the edge test subset in the root, with the wheel's extensions
    arch="$1" root="$roots/root-$1"
    shift
    [ -d "$out/$arch/wheelhouse" ] || build "$arch"
    rm -rf "$root/src" "$root/out" && mkdir -p "$root/out"
    copy_sources "$root/src"
    cp -r "$out/$arch/wheelhouse" "$root/out/"
    log "edge tests in the $arch root: $*"
    started=$(date +%s)
    # The checkout with the extensions of the wheel just built, the wheelhouse's dependencies, and
    # the test tools (binary wheels or pure Python: not pycddl, a Rust build, nor atheris, so the
    # subset leaves out test_cddl and test_fuzz); mosquitto for the tests that talk to a broker.
    in_root "$arch" /bin/sh -eu -c '
        command -v mosquitto >/dev/null || { apt-get update -qq && \
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; }
        test -x /opt/test-venv/bin/pytest || python3 -m venv '"$(venv_flags "$arch")"' /opt/test-venv
        /opt/test-venv/bin/pip install --quiet --find-links /out/wheelhouse '"$(only_binary "$arch")"' \
            "$(ls /out/wheelhouse/lienwatch-*.whl)[edge]" "Cython>=3.0" "setuptools>=69" \
            pytest pytest-timeout hypothesis "pynmeagps>=1.0.40" "obd==0.7.3" msgpack
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

clean() {  # clean: unmount whatever is mounted in the roots, remove this clone's build state
    for mount_point in $(awk '{print $2}' /proc/mounts | grep -E "^($roots|$state)/" | sort -r); do
        umount "$mount_point" || umount -l "$mount_point"
    done
    # --one-file-system: never into a host directory that is still bound in a root.
    rm -rf --one-file-system "$state" "$out"
    if [ "${GATEWAY_CLEAN_ROOTS:-0}" = 1 ]; then
        rm -rf --one-file-system "$roots"
        log "removed the cached roots in $roots"
    fi
}

# The whole dispatch is one function read before it runs, so editing this file while a build
# runs cannot change what the running shell reads next.
main() {
    command="${1:-}"
    [ -n "$command" ] || die "usage: $0 host-deps | root ARCH | sdist-wheels ARCH | build ARCH | deb ARCH | run ARCH CMD... | edge-tests ARCH ARGS | clean"
    shift
    case "$command" in
        host-deps) host_deps ;;
        root) need_root; make_root "$1" ;;
        build) need_root; check_arch "$1"; build "$1" ;;
        sdist-wheels) need_root; check_arch "$1"; make_root "$1"; sdist_wheels "$1" ;;
        deb) need_root; check_arch "$1"; deb "$1" ;;
        run) need_root; arch="$1"; shift; in_root "$arch" "$@" ;;
        clean) need_root; clean ;;
        edge-tests) need_root; arch="$1"; shift; check_arch "$arch"; edge_tests "$arch" "$@" ;;
        *) die "unknown command '$command'" ;;
    esac
}

main "$@"; exit $?
