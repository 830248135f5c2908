-- ClickHouse tables of the analytical path. Applied by `order-gateway setup`
-- (every statement is idempotent). Versions: ReplacingMergeTree keeps, per
-- key, the row with the highest `version`; `is_deleted = 1` rows (CDC deletes)
-- drop out of FINAL reads. PII (e-mail, phone, street address) is not copied
-- here: BI needs the country, not the person.

CREATE TABLE IF NOT EXISTS orders
(
    order_id             String COMMENT 'Stable order id (Kafka key)',
    order_number         String COMMENT 'Human-facing order number',
    customer_id          String COMMENT 'Customer who placed the order',
    channel              LowCardinality(String) COMMENT 'web, app, store, call_center, marketplace',
    status               LowCardinality(String) COMMENT 'Order status in this version',
    currency             LowCardinality(String) COMMENT 'ISO 4217 code of every amount in the row',
    subtotal             Int64 COMMENT 'Minor units',
    tax                  Int64 COMMENT 'Minor units',
    shipping             Int64 COMMENT 'Minor units',
    discount             Int64 COMMENT 'Minor units',
    total                Int64 COMMENT 'Minor units: subtotal + tax + shipping - discount',
    units                UInt32 COMMENT 'Sum of line quantities',
    line_count           UInt16 COMMENT 'Number of lines',
    country              LowCardinality(String) COMMENT 'Shipping country (ISO 3166-1 alpha-2), empty when none',
    promised_delivery_at Nullable(DateTime64(3, 'UTC')) COMMENT 'Delivery promised to the customer',
    created_at           DateTime64(3, 'UTC') COMMENT 'When the order was placed',
    updated_at           DateTime64(3, 'UTC') COMMENT 'When this version was taken',
    version              UInt64 COMMENT 'Monotonic per order: an order service''s version plus 2^62, or a legacy (CDC) order''s (below 2^62)',
    is_deleted           UInt8 COMMENT '1 when the order was deleted at the source',
    cdc                  String COMMENT 'Legacy orders (CDC): JSON of the source log position of each of its rows, empty for others',
    ingested_at          DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'When ingest wrote the row'
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(created_at)
ORDER BY order_id;

CREATE TABLE IF NOT EXISTS order_lines
(
    order_id    String,
    line_id     String,
    sku         String,
    name        String,
    quantity    UInt32,
    unit_price  Int64 COMMENT 'Minor units of currency',
    currency    LowCardinality(String),
    status      LowCardinality(String),
    created_at  DateTime64(3, 'UTC') COMMENT 'Order creation time (partition key)',
    version     UInt64 COMMENT 'Version of the order this line was part of',
    is_deleted  UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(created_at)
ORDER BY (order_id, line_id);

-- Fulfilment events carry no order creation time, so there is no stable month
-- per key to partition by; the table is small next to orders and lines.
CREATE TABLE IF NOT EXISTS fulfillments
(
    fulfillment_id  String,
    order_id        String,
    type            LowCardinality(String) COMMENT 'ship, pickup, digital',
    status          LowCardinality(String),
    carrier         LowCardinality(String) COMMENT 'Empty when none',
    tracking_number String COMMENT 'Empty when none',
    line_ids        Array(String),
    shipped_at      Nullable(DateTime64(3, 'UTC')),
    delivered_at    Nullable(DateTime64(3, 'UTC')),
    version         UInt64 COMMENT 'Monotonic per fulfilment'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (order_id, fulfillment_id);

-- Latest state, for BI tools that do not want to think about FINAL.
CREATE VIEW IF NOT EXISTS orders_latest AS
SELECT * FROM orders FINAL;

CREATE VIEW IF NOT EXISTS fulfillments_latest AS
SELECT * FROM fulfillments FINAL;

-- Lines of the latest version of each live order: a line dropped from an order
-- in a later version disappears here, even though its old row remains.
CREATE VIEW IF NOT EXISTS order_lines_latest AS
SELECT *
FROM order_lines FINAL
WHERE (order_id, version) IN (SELECT order_id, version FROM orders FINAL);

-- Order number -> order id, for lookups by number. `orders` is ordered by
-- order_id, so a number looked up there reads the whole table, and a miss
-- (an unknown number) always does. Kept by order_numbers_mv on every insert
-- into `orders` (ingest's normal writes). Rows `orders` held before the view
-- existed are copied by `setup`, which marks the table's comment as pending
-- until that copy is done and repeats it on its next run if it was cut short.
-- A number never changes, so each order keeps one row once merges catch up
-- (and a duplicate until then names the same order).
CREATE TABLE IF NOT EXISTS order_numbers
(
    order_number String COMMENT 'Human-facing order number',
    order_id     String COMMENT 'The order it names'
)
ENGINE = ReplacingMergeTree
ORDER BY (order_number, order_id)
COMMENT 'Order number to order id, kept by order_numbers_mv';

CREATE MATERIALIZED VIEW IF NOT EXISTS order_numbers_mv TO order_numbers AS
SELECT order_number, order_id FROM orders;

-- `orders` tables made before the `cdc` column existed.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS cdc String COMMENT 'Legacy orders (CDC): JSON of the source log position of each of its rows, empty for others' AFTER is_deleted;
