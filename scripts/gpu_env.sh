# Sourced by scripts/gpu_test.sh and bench/gpu_bench.sh: nvcc on the PATH, and, when LMCORE_DEBS
# names a folder of Debian .deb files (libcjson-dev, libpcre2-dev, libutf8proc-dev and their
# runtime libraries), those unpacked into a private prefix for machines that lack them.
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
if [ -n "${LMCORE_DEBS:-}" ]; then
  echo "=== unpacking $(ls "$LMCORE_DEBS"/*.deb | wc -l) .deb files from $LMCORE_DEBS"
  prefix=$(mktemp -d /tmp/lmcore-deps.XXXXXX)
  for f in "$LMCORE_DEBS"/*.deb; do dpkg -x "$f" "$prefix"; done
  # the .pc files name /usr: point them at the private prefix
  find "$prefix" -name '*.pc' -exec sed -i "s|^prefix=/usr|prefix=$prefix/usr|; s|=/usr/|=$prefix/usr/|g" {} +
  libdir=$(dirname "$(find "$prefix" -name 'libcjson.so*' | head -n 1)")
  export PKG_CONFIG_PATH="$libdir/pkgconfig:$prefix/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LIBRARY_PATH="$libdir${LIBRARY_PATH:+:$LIBRARY_PATH}"
  if ! command -v pkg-config >/dev/null && [ -x "$prefix/usr/bin/pkgconf" ]; then
    mkdir -p "$prefix/bin" && ln -sf "$prefix/usr/bin/pkgconf" "$prefix/bin/pkg-config"
    export PATH="$prefix/bin:$PATH"
  fi
fi
