mod placeholder {}
mod robustness;
mod examples;
mod plan;
