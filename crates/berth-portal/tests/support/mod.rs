pub mod app;
pub mod counting;
