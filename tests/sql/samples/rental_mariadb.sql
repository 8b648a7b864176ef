-- A MariaDB sample schema in the shape of the classic film-rental one:
-- AUTO_INCREMENT on every table, index names shared between tables,
-- CURRENT_TIMESTAMP defaults with ON UPDATE, expression defaults, ENUM and
-- SET, CHECK constraints, a FULLTEXT index, comments, views (one on
-- another), a trigger, a function and a procedure.
CREATE TABLE actor (
  actor_id smallint unsigned NOT NULL AUTO_INCREMENT,
  first_name varchar(45) NOT NULL,
  last_name varchar(45) NOT NULL,
  last_update timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (actor_id),
  KEY idx_last_name (last_name)
) COMMENT 'people who act';
CREATE TABLE store (
  store_id tinyint unsigned NOT NULL AUTO_INCREMENT,
  name varchar(50) NOT NULL COMMENT 'shown on receipts',
  last_update timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (store_id)
);
CREATE TABLE staff (
  staff_id tinyint unsigned NOT NULL AUTO_INCREMENT,
  first_name varchar(45) NOT NULL,
  last_name varchar(45) NOT NULL,
  store_id tinyint unsigned NOT NULL,
  active tinyint(1) NOT NULL DEFAULT 1,
  last_update timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (staff_id),
  KEY idx_fk_store_id (store_id),
  KEY idx_last_name (last_name),
  CONSTRAINT fk_staff_store FOREIGN KEY (store_id) REFERENCES store (store_id)
);
CREATE TABLE customer (
  customer_id smallint unsigned NOT NULL AUTO_INCREMENT,
  store_id tinyint unsigned NOT NULL,
  first_name varchar(45) NOT NULL,
  last_name varchar(45) NOT NULL,
  email varchar(50) DEFAULT NULL,
  active tinyint(1) NOT NULL DEFAULT 1,
  member_code char(36) DEFAULT uuid(),
  create_date datetime NOT NULL DEFAULT current_timestamp(),
  last_update timestamp NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (customer_id),
  KEY idx_fk_store_id (store_id),
  KEY idx_last_name (last_name),
  CONSTRAINT fk_customer_store FOREIGN KEY (store_id) REFERENCES store (store_id),
  CONSTRAINT customer_email_shape CHECK (email IS NULL OR email LIKE '%@%')
);
CREATE TABLE film (
  film_id smallint unsigned NOT NULL AUTO_INCREMENT,
  title varchar(128) NOT NULL,
  description text,
  rental_rate decimal(4,2) NOT NULL DEFAULT 4.99 CHECK (rental_rate >= 0),
  length smallint unsigned DEFAULT NULL,
  rating enum('G','PG','PG-13','R','NC-17') DEFAULT 'G',
  special_features set('Trailers','Commentaries','Deleted Scenes') DEFAULT NULL,
  last_update timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (film_id),
  KEY idx_title (title),
  FULLTEXT KEY idx_title_description (title, description),
  CONSTRAINT film_length_positive CHECK (length > 0)
);
CREATE TABLE film_actor (
  film_actor_id int unsigned NOT NULL AUTO_INCREMENT,
  actor_id smallint unsigned NOT NULL,
  film_id smallint unsigned NOT NULL,
  PRIMARY KEY (film_actor_id),
  UNIQUE KEY film_actor_pair (actor_id, film_id),
  KEY idx_fk_film_id (film_id),
  CONSTRAINT fk_film_actor_actor FOREIGN KEY (actor_id) REFERENCES actor (actor_id),
  CONSTRAINT fk_film_actor_film FOREIGN KEY (film_id) REFERENCES film (film_id)
);
CREATE TABLE inventory (
  inventory_id mediumint unsigned NOT NULL AUTO_INCREMENT,
  film_id smallint unsigned NOT NULL,
  store_id tinyint unsigned NOT NULL,
  PRIMARY KEY (inventory_id),
  KEY idx_fk_film_id (film_id),
  KEY idx_fk_store_id (store_id),
  CONSTRAINT fk_inventory_film FOREIGN KEY (film_id) REFERENCES film (film_id),
  CONSTRAINT fk_inventory_store FOREIGN KEY (store_id) REFERENCES store (store_id)
);
CREATE TABLE rental (
  rental_id int NOT NULL AUTO_INCREMENT,
  rental_date datetime NOT NULL,
  inventory_id mediumint unsigned NOT NULL,
  customer_id smallint unsigned NOT NULL,
  return_date datetime DEFAULT NULL,
  staff_id tinyint unsigned NOT NULL,
  last_update timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (rental_id),
  UNIQUE KEY rental_date (rental_date, inventory_id, customer_id),
  KEY idx_fk_inventory_id (inventory_id),
  KEY idx_fk_customer_id (customer_id),
  KEY idx_fk_staff_id (staff_id),
  CONSTRAINT fk_rental_customer FOREIGN KEY (customer_id) REFERENCES customer (customer_id),
  CONSTRAINT fk_rental_inventory FOREIGN KEY (inventory_id) REFERENCES inventory (inventory_id),
  CONSTRAINT fk_rental_staff FOREIGN KEY (staff_id) REFERENCES staff (staff_id)
);
CREATE TABLE payment (
  payment_id smallint unsigned NOT NULL AUTO_INCREMENT,
  customer_id smallint unsigned NOT NULL,
  staff_id tinyint unsigned NOT NULL,
  rental_id int DEFAULT NULL,
  amount decimal(5,2) NOT NULL,
  payment_date datetime NOT NULL,
  last_update timestamp NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (payment_id),
  KEY idx_fk_staff_id (staff_id),
  KEY idx_fk_customer_id (customer_id),
  CONSTRAINT fk_payment_rental FOREIGN KEY (rental_id) REFERENCES rental (rental_id) ON DELETE SET NULL,
  CONSTRAINT fk_payment_customer FOREIGN KEY (customer_id) REFERENCES customer (customer_id),
  CONSTRAINT fk_payment_staff FOREIGN KEY (staff_id) REFERENCES staff (staff_id)
);
CREATE VIEW actor_names AS SELECT actor_id, CONCAT(first_name, ' ', last_name) AS full_name FROM actor;
CREATE VIEW actor_initials AS SELECT actor_id, LEFT(full_name, 1) AS initial FROM actor_names;
CREATE TRIGGER customer_create_date BEFORE INSERT ON customer FOR EACH ROW SET NEW.email = LOWER(NEW.email);
CREATE FUNCTION film_count() RETURNS int READS SQL DATA RETURN (SELECT COUNT(*) FROM film);
CREATE PROCEDURE touch_store(IN id tinyint) MODIFIES SQL DATA UPDATE store SET name = name WHERE store_id = id;

INSERT INTO store (name) SELECT CONCAT('store ', seq) FROM seq_1_to_3;
INSERT INTO actor (first_name, last_name) SELECT CONCAT('first', seq), CONCAT('last', seq % 37) FROM seq_1_to_120;
INSERT INTO staff (first_name, last_name, store_id) SELECT CONCAT('s', seq), CONCAT('last', seq), 1 + seq % 3 FROM seq_1_to_6;
INSERT INTO customer (store_id, first_name, last_name, email)
  SELECT 1 + seq % 3, CONCAT('c', seq), CONCAT('last', seq % 50), IF(seq % 4 = 0, NULL, CONCAT('C', seq, '@Example.com')) FROM seq_1_to_300;
INSERT INTO film (title, description, rental_rate, length, rating, special_features)
  SELECT CONCAT('film ', seq), CONCAT('about ', seq), 0.99 + seq % 5, 60 + seq % 90,
         ELT(1 + seq % 5, 'G','PG','PG-13','R','NC-17'), IF(seq % 3 = 0, 'Trailers,Commentaries', NULL)
  FROM seq_1_to_200;
INSERT INTO film_actor (actor_id, film_id) SELECT 1 + seq % 120, 1 + seq % 200 FROM seq_1_to_600 ON DUPLICATE KEY UPDATE film_id = film_id;
INSERT INTO inventory (film_id, store_id) SELECT 1 + seq % 200, 1 + seq % 3 FROM seq_1_to_900;
INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id)
  SELECT TIMESTAMP'2025-01-01 10:00:00' + INTERVAL seq HOUR, 1 + seq % 900, 1 + seq % 300, 1 + seq % 6 FROM seq_1_to_1500;
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
  SELECT 1 + seq % 300, 1 + seq % 6, seq, 0.99 + seq % 7, TIMESTAMP'2025-01-01 11:00:00' + INTERVAL seq HOUR FROM seq_1_to_1500;
-- Counters past the largest key: rows deleted at the end.
DELETE FROM payment WHERE payment_id > 1490;
DELETE FROM actor WHERE actor_id > 115 AND actor_id NOT IN (SELECT actor_id FROM film_actor);
