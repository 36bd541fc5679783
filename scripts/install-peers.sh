#!/usr/bin/env bash
# Installs the real peers the tests talk to, when this machine lets us (root + apt):
#   DCMTK (storescu, findscu, movescu, getscu, dcmqrscp), Orthanc + its DICOMweb plugin (a
#   hospital PACS; run by the tests as their own process, never as a system service),
#   Chromium + the OHIF viewer (npm), OpenJPEG's opj_decompress, rsyslog (audit trail over
#   syslog/TLS), and the Python DICOMweb client stack (pydicom, dicomweb-client, pylibjpeg).
# Idempotent. Without root/apt it says what is missing and the tests that need it skip loudly
# (under CI=true a missing peer fails the tests instead).
set -u
cd "$(dirname "$0")/.."

say() { printf 'install-peers: %s\n' "$*"; }
have_root_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_updated=no
apt_install() {
    have_root_apt || { say "cannot install $* (needs root and apt-get)"; return 1; }
    if [ "$apt_updated" = no ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && apt_updated=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

status=0

# Build dependency: CharLS (JPEG-LS) is compiled from source with cmake.
if ! command -v cmake >/dev/null 2>&1; then
    say "installing cmake (builds the JPEG-LS codec)"
    apt_install cmake || status=1
fi

# Never let a package start a system service here (Debian's orthanc would start one on 8042/4242).
forbid_services() {
    if have_root_apt && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fi
}

# DCMTK: the hospital-side peers (and hospital A's PACS, dcmqrscp).
if [ ! -x /usr/bin/storescu ]; then
    say "installing dcmtk"
    forbid_services
    apt_install dcmtk || status=1
fi
[ -x /usr/bin/storescu ] && say "dcmtk: $(/usr/bin/storescu --version 2>/dev/null | head -n 1)"

# Orthanc: hospital B's PACS in tests/common/pacs.rs (started by the tests on ephemeral ports).
if [ ! -x /usr/sbin/Orthanc ] || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
    say "installing orthanc and orthanc-dicomweb"
    forbid_services
    apt_install orthanc orthanc-dicomweb || status=1
fi
[ -x /usr/sbin/Orthanc ] && say "orthanc: $(/usr/sbin/Orthanc --version 2>/dev/null | head -n 1)"

# OpenJPEG's decoder: an independent check that prefixes of our HTJ2K RPCL codestreams decode.
if [ ! -x /usr/bin/opj_decompress ]; then
    say "installing libopenjp2-tools (opj_decompress)"
    apt_install libopenjp2-tools || status=1
fi

# rsyslog with GnuTLS: the audit trail's syslog collector (run by the tests in the foreground).
if [ ! -x /usr/sbin/rsyslogd ] || ! ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1; then
    say "installing rsyslog and rsyslog-gnutls"
    forbid_services
    apt_install rsyslog rsyslog-gnutls || status=1
fi

# Python client stack (pip's own findscu/storescu shadow DCMTK's on PATH: tests call /usr/bin/*).
if command -v python3 >/dev/null 2>&1; then
    if ! python3 -c 'import pydicom, dicomweb_client, pylibjpeg, openjpeg, libjpeg, jpeg_ls, PIL' >/dev/null 2>&1; then
        say "installing Python packages from tests/interop/requirements.txt"
        python3 -m pip install -q -r tests/interop/requirements.txt || status=1
    fi
    python3 -c 'import pydicom, dicomweb_client' >/dev/null 2>&1 && say "python: pydicom + dicomweb-client ready"
else
    say "python3 not found: the dicomweb-client test will skip"
    status=1
fi

# OHIF v3 in headless Chromium.
if command -v node >/dev/null 2>&1; then
    sh tests/ohif/setup.sh || status=1
else
    say "node not found: the OHIF viewer test will skip"
    status=1
fi

exit $status
