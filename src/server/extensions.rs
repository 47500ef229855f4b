//! State a domain keeps for the life of the server (federation's clients and caches),
//! held here by type so that `server` needs to know nothing of the domain.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Default)]
pub struct Extensions {
    slots: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions").finish_non_exhaustive()
    }
}

impl Extensions {
    /// The value of type `T`, made by `init` the first time (under the lock: `init` must
    /// be quick and must not itself ask for an extension).
    pub fn get_or_try_init<T, E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = slots.get(&TypeId::of::<T>())
            && let Ok(value) = found.clone().downcast::<T>()
        {
            return Ok(value);
        }
        let value = Arc::new(init()?);
        slots.insert(TypeId::of::<T>(), value.clone());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Extensions;

    #[test]
    fn one_value_per_type_made_once() {
        let extensions = Extensions::default();
        let first = extensions
            .get_or_try_init(|| Ok::<_, ()>(String::from("a")))
            .unwrap();
        let again = extensions
            .get_or_try_init(|| Ok::<_, ()>(String::from("b")))
            .unwrap();
        assert_eq!(*again, "a");
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        let failed = extensions.get_or_try_init(|| Err::<u32, _>("no"));
        assert_eq!(failed.unwrap_err(), "no");
        assert_eq!(
            *extensions.get_or_try_init(|| Ok::<_, ()>(7u32)).unwrap(),
            7
        );
    }
}
