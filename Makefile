# fleetlm/Makefile
#
# Build with PGXS.  `make run` starts a local demo server, `make test` runs
# the whole suite (pg_regress + TAP) against private temporary servers.

EXTENSION = fleetlm fleetlm_proxy
MODULE_big = fleetlm
OBJS = \
	src/fleetlm.o \
	src/shmem.o \
	src/record.o \
	src/ring.o \
	src/segment.o \
	src/session.o \
	src/tables.o \
	src/spi_util.o \
	src/walwriter.o \
	src/longpoll.o \
	src/applywait.o \
	src/applier.o \
	src/pending.o \
	src/recovery.o \
	src/replica.o \
	src/args.o \
	src/ulid.o \
	src/idempotency.o \
	src/batch.o \
	src/append.o \
	src/read.o \
	src/api.o \
	src/pipeline.o \
	src/admin.o \
	src/agent_json.o \
	src/agent_parts.o \
	src/agent_compact.o \
	src/agent_openai.o \
	src/agent_stream.o \
	src/agent_sql.o \
	src/agent_url.o \
	src/agent_registry.o \
	src/stream.o \
	src/secrets.o \
	src/dispatch_turns.o \
	src/dispatch_http.o \
	src/dispatch_history.o \
	src/dispatch_agents.o \
	src/dispatch_request.o \
	src/dispatch.o

DATA = sql/fleetlm--1.0.sql sql/fleetlm_proxy--1.0.sql
PGFILEDESC = "fleetlm - durable conversation store for LLM agents"

REGRESS = fleetlm_setup fleetlm_core fleetlm_api fleetlm_roles fleetlm_errors \
	fleetlm_agent_stream fleetlm_agents export
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf --load-extension=fleetlm

PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lcurl
# -Wall comes from PostgreSQL's own flags; add -Wextra minus the noise that
# PostgreSQL's headers produce with it.
PG_CFLAGS = -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Wno-clobbered

PG_CONFIG ?= $(shell command -v pg_config 2>/dev/null || echo /usr/lib/postgresql/15/bin/pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): $(wildcard $(srcdir)/src/*.h)

.PHONY: run stop test deps

deps:
	./scripts/deps.sh

run:
	./scripts/run.sh start

stop:
	./scripts/run.sh stop

test:
	./scripts/test.sh

# Used by scripts/test.sh to learn the pg_regress test list.
print-regress:
	@echo $(REGRESS)
