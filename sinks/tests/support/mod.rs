pub mod events;
pub mod httpd;
pub mod kafka;
pub mod tmpfs;
