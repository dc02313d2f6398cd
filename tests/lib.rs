mod placeholder {}
mod robustness;
