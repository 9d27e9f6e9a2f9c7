-- a second database for shardguard's audit history (tables are created by shardguard on first use)
CREATE USER shardguard WITH PASSWORD 'shardguard';
CREATE DATABASE shardguard OWNER shardguard;
