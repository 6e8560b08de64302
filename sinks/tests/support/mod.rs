pub mod httpd;
