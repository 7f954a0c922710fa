#!/bin/bash
# pg-standby (deploy/compose-ha.yaml): at its first start, copy the primary (pg_basebackup -R writes the
# standby's primary_conninfo; application_name=pg-standby is the name the primary's
# synchronous_standby_names waits for), then run as a hot standby. After `pg_ctl promote` it is the primary.
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
    until gosu postgres pg_isready -h pg-primary -U traza -d traza_latam; do sleep 1; done
    gosu postgres pg_basebackup -d "host=pg-primary user=traza application_name=pg-standby" \
        -D "$PGDATA" -R -X stream -c fast
fi
exec gosu postgres postgres -c hot_standby=on
