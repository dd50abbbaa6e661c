-- A second database on the same server for the standalone projector's tables
-- (docker-compose.yml, service projector): the read side apart from the log.
CREATE DATABASE billing_read;
