//! Events on the wire: Avro (Confluent framing, schemas from the registry),
//! JSON, and Debezium change events, decoded into [`crate::model::Event`].
