-- The legacy OMS's order tables, as an older system keeps them: money as
-- numeric, a local `timestamp` beside a `timestamptz`, the status as text and
-- a row version bumped by the application. Debezium captures both tables
-- (connectors/legacy-orders.json); the gateway maps them with `[cdc]`.
--
-- REPLICA IDENTITY FULL: a delete's `before` image carries the whole row, so
-- the gateway can mark the order deleted in ClickHouse with its last values.
-- Idempotent: `scripts/stack` applies it to every database it creates.
CREATE SCHEMA IF NOT EXISTS legacy;

CREATE TABLE IF NOT EXISTS legacy.orders (
    order_id      bigint         PRIMARY KEY,
    order_no      varchar(32)    NOT NULL UNIQUE,
    customer_ref  varchar(64)    NOT NULL,
    status        text           NOT NULL,
    currency      char(3)        NOT NULL,
    total_amount  numeric(12, 2) NOT NULL,
    -- The old system wrote its clock's local time without a zone; it ran on UTC.
    ordered_at    timestamp      NOT NULL,
    updated_at    timestamptz    NOT NULL DEFAULT now(),
    row_version   integer        NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS legacy.order_lines (
    order_id     bigint         NOT NULL REFERENCES legacy.orders (order_id) ON DELETE CASCADE,
    line_no      integer        NOT NULL,
    sku          varchar(64)    NOT NULL,
    description  text           NOT NULL,
    quantity     integer        NOT NULL CHECK (quantity > 0),
    unit_price   numeric(12, 2) NOT NULL,
    status       text           NOT NULL DEFAULT 'OPEN',
    PRIMARY KEY (order_id, line_no)
);

ALTER TABLE legacy.orders REPLICA IDENTITY FULL;
ALTER TABLE legacy.order_lines REPLICA IDENTITY FULL;

-- What Debezium reads (pgoutput): the two tables and nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'legacy_orders') THEN
        CREATE PUBLICATION legacy_orders FOR TABLE legacy.orders, legacy.order_lines;
    END IF;
END
$$;
