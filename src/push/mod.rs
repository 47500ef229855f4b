//! Push: the rules that decide which events notify whom (`rules`). Evaluation, counts,
//! pushers and delivery to push gateways build on them.

pub mod badges;
pub mod delivery;
pub mod evaluate;
pub mod pushers;
pub mod rules;
