//! Upload state in Redis. INTERFACE STUB: implementation pending.

use super::StoreResult;

pub struct RedisMetaStore {}

impl RedisMetaStore {
    /// Connects (with a reconnecting `ConnectionManager`) and namespaces every key under `prefix`.
    pub async fn connect(_url: &str, _prefix: &str) -> StoreResult<Self> {
        Err(super::StoreError::Backend("redis store pending".into()))
    }
}
