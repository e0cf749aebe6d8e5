//! Instances → jobs (instance × resource), grouped by the state partition
//! that owns them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::instance::{Instance, Resource};
use crate::state::JobId;
use crate::state::partition_for;

/// One polling job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub instance: Arc<Instance>,
    /// Index into `instance.resources`.
    resource: usize,
}

impl Job {
    pub fn resource(&self) -> &Resource {
        // The index is taken from the same instance at construction.
        &self.instance.resources[self.resource]
    }
}

impl Job {
    /// The job of `instance`'s resource `name`, polled or not (an operator
    /// may try a disabled instance).
    pub fn of(instance: &Arc<Instance>, name: &str) -> Option<Job> {
        let index = instance.resources.iter().position(|r| r.name == name)?;
        Some(Job {
            id: JobId::new(&instance.id, name),
            instance: instance.clone(),
            resource: index,
        })
    }
}

/// The jobs of every polled instance, by state partition. Instances that
/// are disabled (or webhook-driven) have no jobs.
pub fn jobs_by_partition(instances: &[Arc<Instance>], partitions: i32) -> BTreeMap<i32, Vec<Job>> {
    let mut out: BTreeMap<i32, Vec<Job>> = BTreeMap::new();
    for instance in instances.iter().filter(|i| i.is_polled()) {
        let p = partition_for(&instance.id, partitions);
        for (index, resource) in instance.resources.iter().enumerate() {
            out.entry(p).or_default().push(Job {
                id: JobId::new(&instance.id, &resource.name),
                instance: instance.clone(),
                resource: index,
            });
        }
    }
    out
}
