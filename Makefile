# Makefile for kis_fdw (PGXS)
#
#   make && make install     build and install into the PostgreSQL that pg_config names
#   make test                the whole test suite on a throwaway cluster and mock KIS server
#   make demo                the main job: a throwaway cluster, the mock (or real KIS), a few queries
#   make bench               the benchmarks against the mock KIS server (bench/run.sh)

MODULE_big = kis_fdw
OBJS = \
	kis_fdw.o \
	src/auth.o \
	src/describe.o \
	src/endpoints.o \
	src/fetch.o \
	src/limiter.o \
	src/options.o \
	src/quals.o \
	src/requests.o \
	src/response.o \
	src/shmem.o \
	src/stats.o

EXTENSION = kis_fdw
DATA = kis_fdw--1.0.sql
PGFILEDESC = "kis_fdw - foreign data wrapper for the KIS Open API"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK = -lcurl -ljansson -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the shared header (PGXS tracks no header dependencies)
$(OBJS): src/kis_fdw.h

.PHONY: test demo bench
test:
	bash test/run-tests.sh

demo:
	bash test/demo.sh

bench:
	bash bench/run.sh
