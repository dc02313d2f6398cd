mod placeholder {}
mod robustness;
mod examples;
mod checks;
mod plan;
mod cli;
mod explain;
mod snapshots;
mod support;
mod router_differential;
