# Makefile for kis_fdw (PGXS)
#
#   make && make install     build and install into the PostgreSQL that pg_config names
#   make test                the whole test suite on a throwaway cluster and mock KIS server
#   make test PG_MAJOR=18    the same against another PostgreSQL major (15, 17, 18), obtained
#                            from Debian's archive and cached in /var/cache/kis_fdw (scripts/get-pg.sh)
#   make installcheck        the pg_regress tests against a running server that has kis_fdw
#                            installed and a mock KIS server (docs/testing.md says how)
#   make demo                the main job: a throwaway cluster, the mock (or real KIS), a few queries
#   make bench               the benchmarks against the mock KIS server (bench/run.sh)
#   make fuzz-sql            sqlsmith's random queries against kis tables on a throwaway
#                            cluster and the mock: SQLSMITH_QUERIES per seed (default
#                            100000) for each of SQLSMITH_SEEDS (default 1; "1,2,3")
#   make headerscheck        each src/*.h compiles alone; the header rules hold

MODULE_big = kis_fdw
OBJS = \
	kis_fdw.o \
	src/arena.o \
	src/async_wait.o \
	src/auth.o \
	src/cache.o \
	src/declared.o \
	src/describe.o \
	src/endpoints.o \
	src/fetch.o \
	src/fetch_answer.o \
	src/join.o \
	src/join_exec.o \
	src/join_plan.o \
	src/json_pick.o \
	src/keys.o \
	src/library.o \
	src/limiter.o \
	src/live.o \
	src/live_scan.o \
	src/live_sql.o \
	src/master.o \
	src/options.o \
	src/outcome.o \
	src/paging.o \
	src/partition.o \
	src/plan.o \
	src/pushdown.o \
	src/quals.o \
	src/requests.o \
	src/response.o \
	src/run.o \
	src/scan.o \
	src/shmem.o \
	src/stats.o \
	src/text.o \
	src/transport.o \
	src/util.o \
	src/worker.o

EXTENSION = kis_fdw
# make installcheck: the same tests and order as make test's pg_regress run
REGRESS = $(shell sed -n 's/^test: *//p' $(srcdir)/test/schedule)
REGRESS_OPTS = --dbname=kis_regress
DATA = kis_fdw--1.0.sql kis_fdw--1.0--1.1.sql kis_fdw--1.2.sql kis_fdw--1.1--1.2.sql \
	kis_fdw--1.0--1.2.sql kis_fdw--1.3.sql kis_fdw--1.2--1.3.sql
PGFILEDESC = "kis_fdw - foreign data wrapper for the KIS Open API"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare -Wno-cast-function-type
# warnings are errors where the project asks (make test, CI), not in a
# packager's build with a newer compiler
ifeq ($(KIS_WERROR),1)
PG_CFLAGS += -Werror
endif
SHLIB_LINK = -lcurl -ljansson -lssl -lcrypto -lz -lwslay

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
# a fresh machine: no PostgreSQL headers yet; the demo and test scripts install them
all:
	@echo "pg_config not found: run 'make test' or 'make demo' (they install what is missing)," >&2
	@echo "or: sudo apt-get install postgresql-server-dev-15 libcurl4-openssl-dev libjansson-dev libssl-dev libwslay-dev" >&2
	@exit 1
endif

# an out-of-tree (VPATH) build, as pg_buildext makes for each major, needs
# the objects' folder in the build tree
ifdef VPATH
$(shell mkdir -p src)
endif

# every object depends on the headers (PGXS tracks no header dependencies)
KIS_HEADERS = $(wildcard $(srcdir)/src/*.h)
$(OBJS): $(KIS_HEADERS)

.PHONY: test demo bench headerscheck fuzz-sql
test:
	PG_MAJOR="$(PG_MAJOR)" bash test/run-tests.sh

demo:
	bash test/demo.sh

bench:
	bash bench/run.sh

SQLSMITH_QUERIES ?= 100000
SQLSMITH_SEEDS ?= 1
fuzz-sql:
	bash test/sqlsmith/run.sh $(SQLSMITH_QUERIES) $(SQLSMITH_SEEDS)

# every src/*.h compiles alone after postgres.h; the private slot layout and
# fetch.h keep to their rules (test/headerscheck.sh; make test runs it)
headerscheck:
	CC="$(CC)" CPPFLAGS="$(CPPFLAGS)" CFLAGS="$(CFLAGS)" bash $(srcdir)/test/headerscheck.sh

# ---------------------------------------------------------------------------
# libFuzzer harness over answer parsing (fuzz/): response.c, requests.c,
# paging.c, endpoints.c, master.c, auth.c and outcome.c built outside the server with
# fuzz/shims.c.
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_JOBS=1]   build, then fuzz for that long
#   make fuzz-build / fuzz-clean
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ_CC ?= clang
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=all -D_GNU_SOURCE -Wno-ignored-attributes \
	-I$(includedir_server) -I$(srcdir)/src -I$(srcdir)/fuzz
# fuzz/build/pg-version: the PostgreSQL the objects were built against;
# another one rebuilds them
FUZZ_STAMP = fuzz/build/pg-version
FUZZ_OBJS = fuzz/build/fuzz_kis.o fuzz/build/fake_fetch.o fuzz/build/shims.o \
	fuzz/build/response.o fuzz/build/requests.o fuzz/build/paging.o fuzz/build/endpoints.o \
	fuzz/build/auth.o fuzz/build/master.o fuzz/build/outcome.o fuzz/build/util.o \
	fuzz/build/json_pick.o

fuzz/build/%.o: src/%.c $(KIS_HEADERS) fuzz/shims.h
	@mkdir -p fuzz/build
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

# the shims hold copies of PostgreSQL code, which relies on -fwrapv
fuzz/build/shims.o: fuzz/shims.c fuzz/shims.h
	@mkdir -p fuzz/build
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fwrapv -c $< -o $@

fuzz/build/fuzz_kis.o fuzz/build/fake_fetch.o: fuzz/build/%.o: fuzz/%.c $(KIS_HEADERS) \
		fuzz/shims.h fuzz/harness.h
	@mkdir -p fuzz/build
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_OBJS): $(FUZZ_STAMP)
$(FUZZ_STAMP): fuzz-stamp-check
	@mkdir -p fuzz/build
	@echo $(VERSION_NUM) | cmp -s - $@ || echo $(VERSION_NUM) > $@

# libpgcommon.a is in pkglibdir in Debian's packages, in libdir in a source build
fuzz/kis_fuzz: $(FUZZ_OBJS)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $(FUZZ_OBJS) -L$(pkglibdir) -L$(libdir) -lpgcommon -lpgport -ljansson -lcrypto -lz -lm -o $@

.PHONY: fuzz fuzz-build fuzz-clean fuzz-stamp-check
fuzz-build: fuzz/kis_fuzz

fuzz: fuzz/kis_fuzz
	bash fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_JOBS)

fuzz-clean:
	rm -rf fuzz/build fuzz/kis_fuzz fuzz/work
