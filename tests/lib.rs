mod placeholder {}
mod robustness;
mod examples;
