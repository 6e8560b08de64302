pub mod events;
pub mod httpd;
pub mod tmpfs;
