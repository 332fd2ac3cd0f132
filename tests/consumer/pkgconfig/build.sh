#!/bin/sh
# A product built by hand from `pkg-config kiln`: compiles the consumer once, then links it
# against libkiln.so (pkg-config --libs) and libkiln.a (pkg-config --static --libs).
#   build.sh CXX OUT_DIR
set -eu
cxx=$1 out=$2
here=$(dirname "$0")
$cxx -std=c++20 $(pkg-config --cflags kiln) -c "$here/../lenet_consumer.cpp" -o "$out/lenet_consumer.o"
$cxx "$out/lenet_consumer.o" -o "$out/lenet_consumer_shared" $(pkg-config --libs kiln)
$cxx "$out/lenet_consumer.o" -o "$out/lenet_consumer_static" \
  $(pkg-config --static --libs kiln | sed 's/-lkiln\b/-l:libkiln.a/')
