//! Order records shaped like Keap REST v1 `Order`s, and the seeded generator
//! that invents and changes them.
//!
//! Field names and nesting follow Keap's v1 model (`InfusionsoftOrder` in
//! Keap's published SDKs): snake_case keys, money as JSON numbers, contact and
//! shipping as nested objects, items with a nested product. Only the
//! generator's random source decides the data, so one seed and one sequence
//! of operations always give the same ids and fields; only the dates depend
//! on the clock.

use chrono::{DateTime, Utc};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Serialize, Serializer};

use super::clock::format_keap;

/// Money in cents, written as a JSON number in currency units (`19.99`),
/// as Keap does. Integer cents keep totals exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Money(pub i64);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 100.0)
    }
}

fn keap_date<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_keap(*t))
}

/// Keap's order statuses as they appear in v1 JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    Draft,
    Unpaid,
    Paid,
}

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: u64,
    pub title: String,
    pub status: OrderStatus,
    pub recurring: bool,
    pub total: Money,
    pub total_paid: Money,
    pub total_due: Money,
    pub refund_total: Money,
    pub allow_payment: bool,
    pub allow_paypal: bool,
    pub notes: String,
    pub terms: String,
    pub source_type: &'static str,
    #[serde(serialize_with = "keap_date")]
    pub creation_date: DateTime<Utc>,
    #[serde(serialize_with = "keap_date")]
    pub modification_date: DateTime<Utc>,
    #[serde(serialize_with = "keap_date")]
    pub order_date: DateTime<Utc>,
    pub lead_affiliate_id: u64,
    pub sales_affiliate_id: u64,
    pub contact: Contact,
    pub order_items: Vec<OrderItem>,
    pub shipping_information: ShippingInformation,
}

impl Order {
    /// Paid in full: what the `paid=true` filter selects.
    pub fn is_paid(&self) -> bool {
        self.status == OrderStatus::Paid
    }

    fn recompute_totals(&mut self) {
        let total: i64 = self
            .order_items
            .iter()
            .map(|i| i.price.0 * i64::from(i.quantity) - i.discount.0)
            .sum();
        self.total = Money(total);
        self.total_due = Money((total - self.total_paid.0).max(0));
        self.status = match (self.total_due.0, self.status) {
            (0, _) if total > 0 => OrderStatus::Paid,
            (_, OrderStatus::Draft) => OrderStatus::Draft,
            _ => OrderStatus::Unpaid,
        };
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub company_name: String,
    pub job_title: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderItem {
    pub id: u64,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub notes: String,
    pub quantity: u32,
    pub price: Money,
    pub cost: Money,
    pub discount: Money,
    pub product: Product,
}

#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub id: u64,
    pub name: &'static str,
    pub description: &'static str,
    pub sku: &'static str,
    pub shippable: bool,
    pub taxable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShippingInformation {
    pub id: u64,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub company: String,
    pub phone: String,
    pub street1: String,
    pub street2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country: &'static str,
    pub invoice_to_company: bool,
}

/// (id, name, description, sku, price in cents, cost in cents, shippable)
type CatalogEntry = (
    u64,
    &'static str,
    &'static str,
    &'static str,
    i64,
    i64,
    bool,
);

/// A small fixed catalogue so that product ids and SKUs repeat across orders
/// the way they do in a real store.
const CATALOG: &[CatalogEntry] = &[
    (
        101,
        "Starter Coaching Package",
        "Four one-hour sessions",
        "COACH-4",
        39_900,
        0,
        false,
    ),
    (
        102,
        "Online Course: Email Marketing",
        "Self-paced video course",
        "COURSE-EM",
        19_700,
        0,
        false,
    ),
    (
        103,
        "Branded Water Bottle",
        "750 ml stainless steel",
        "BOTTLE-750",
        2_495,
        820,
        true,
    ),
    (
        104,
        "Organic Coffee Beans 1 kg",
        "Medium roast, whole bean",
        "COFFEE-1KG",
        2_899,
        1_150,
        true,
    ),
    (
        105,
        "Yoga Mat Pro",
        "6 mm, non-slip",
        "MAT-PRO",
        6_900,
        2_300,
        true,
    ),
    (
        106,
        "Monthly Membership",
        "Access to the member area",
        "MEMBER-M",
        2_900,
        0,
        false,
    ),
    (
        107,
        "Printed Workbook",
        "120 pages, spiral bound",
        "BOOK-WB",
        3_450,
        900,
        true,
    ),
    (
        108,
        "Webinar Ticket",
        "Live webinar seat",
        "WEBINAR",
        4_900,
        0,
        false,
    ),
    (
        109,
        "Gift Card $50",
        "Redeemable online",
        "GIFT-50",
        5_000,
        0,
        false,
    ),
    (
        110,
        "Essential Oils Kit",
        "Six 10 ml bottles",
        "OILS-6",
        7_995,
        2_600,
        true,
    ),
    (
        111,
        "Consultation Call",
        "30-minute call",
        "CALL-30",
        9_900,
        0,
        false,
    ),
    (
        112,
        "Tote Bag",
        "Cotton canvas",
        "TOTE-01",
        1_800,
        450,
        true,
    ),
];

const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas",
    "Mia", "Mateo", "Amelia", "Ethan", "Harper", "Aiden", "Evelyn", "Oliver", "Abigail", "Jacob",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
];
const COMPANIES: &[&str] = &[
    "",
    "",
    "",
    "Acme Wellness LLC",
    "Bright Path Coaching",
    "Sunrise Bakery",
    "Northwind Studio",
];
const JOB_TITLES: &[&str] = &["", "", "Owner", "Office Manager", "Coach", "Marketing Lead"];
/// (city, state, zip prefix)
const CITIES: &[(&str, &str, &str)] = &[
    ("Phoenix", "AZ", "850"),
    ("Chandler", "AZ", "852"),
    ("Austin", "TX", "787"),
    ("Denver", "CO", "802"),
    ("Portland", "OR", "972"),
    ("Columbus", "OH", "432"),
    ("Raleigh", "NC", "276"),
    ("Tampa", "FL", "336"),
];
const STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Elm St",
    "Washington Blvd",
    "Lakeview Rd",
];
const TITLES: &[&str] = &[
    "Online Sales Order",
    "Shopping Cart Order",
    "Manual Order",
    "Invoice",
];
const SOURCES: &[&str] = &["API", "SHOPPING_CART", "MANUAL", "INVOICE"];
const NOTES: &[&str] = &[
    "",
    "",
    "Leave at the front door",
    "Gift wrap please",
    "Customer called about delivery date",
    "Ships after payment clears",
];

/// Contacts are drawn from a fixed pool so `contact_id` filters match
/// several orders; a contact's name and email follow from its id alone.
const CONTACT_POOL: u64 = 500;

/// Invents orders and their later changes from one seeded random source.
///
/// Xoshiro256++ is used because its output is fixed by its definition,
/// unlike `StdRng`, whose algorithm may change between `rand` releases.
#[derive(Debug)]
pub struct Generator {
    rng: Xoshiro256PlusPlus,
    next_item_id: u64,
    next_shipping_id: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            next_item_id: 1,
            next_shipping_id: 1,
        }
    }

    /// A number in `0..n` from the data random source (history spacing, the
    /// choice of which order a live update touches).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.rng.random_range(0..n)
        }
    }

    /// A new order created at `at` (creation, modification and order dates
    /// are all `at`, as for an order Keap has just recorded).
    pub fn new_order(&mut self, id: u64, at: DateTime<Utc>) -> Order {
        let contact = contact(self.rng.random_range(1..=CONTACT_POOL));
        let n_items = match self.rng.random_range(0..10u32) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        let order_items = (0..n_items).map(|_| self.item()).collect();
        let (city, state, zip) = CITIES[self.rng.random_range(0..CITIES.len())];
        let shipping_information = ShippingInformation {
            id: self.take_shipping_id(),
            first_name: contact.first_name.clone(),
            middle_name: String::new(),
            last_name: contact.last_name.clone(),
            company: contact.company_name.clone(),
            phone: format!(
                "({}) 555-{:04}",
                self.rng.random_range(200..990u32),
                self.rng.random_range(0..10_000u32)
            ),
            street1: format!(
                "{} {}",
                self.rng.random_range(1..9_999u32),
                STREETS[self.rng.random_range(0..STREETS.len())]
            ),
            street2: if self.rng.random_bool(0.2) {
                format!("Apt {}", self.rng.random_range(1..400u32))
            } else {
                String::new()
            },
            city: city.to_owned(),
            state: state.to_owned(),
            zip: format!("{zip}{:02}", self.rng.random_range(0..100u32)),
            country: "USA",
            invoice_to_company: false,
        };
        let status_roll = self.rng.random_range(0..100u32);
        let mut order = Order {
            id,
            title: format!(
                "{} - {} {}",
                TITLES[self.rng.random_range(0..TITLES.len())],
                contact.first_name,
                contact.last_name
            ),
            status: if status_roll < 5 {
                OrderStatus::Draft
            } else {
                OrderStatus::Unpaid
            },
            recurring: self.rng.random_bool(0.1),
            total: Money(0),
            total_paid: Money(0),
            total_due: Money(0),
            refund_total: Money(0),
            allow_payment: true,
            allow_paypal: self.rng.random_bool(0.5),
            notes: NOTES[self.rng.random_range(0..NOTES.len())].to_owned(),
            terms: String::new(),
            source_type: SOURCES[self.rng.random_range(0..SOURCES.len())],
            creation_date: at,
            modification_date: at,
            order_date: at,
            lead_affiliate_id: self.affiliate(),
            sales_affiliate_id: self.affiliate(),
            contact,
            order_items,
            shipping_information,
        };
        order.recompute_totals();
        if (5..75).contains(&status_roll) {
            // Most orders are paid at checkout.
            order.total_paid = order.total;
            order.recompute_totals();
        }
        order
    }

    /// Changes `order` the way a store's staff or customers would, and marks
    /// it modified at `at`.
    pub fn update(&mut self, order: &mut Order, at: DateTime<Utc>) {
        match self.rng.random_range(0..3u32) {
            0 if order.total_due.0 > 0 => {
                // A payment arrives: part or all of what is due.
                let part = if self.rng.random_bool(0.7) {
                    order.total_due.0
                } else {
                    (order.total_due.0 / 2).max(1)
                };
                order.total_paid = Money(order.total_paid.0 + part);
                if order.status == OrderStatus::Draft {
                    order.status = OrderStatus::Unpaid;
                }
            }
            1 => {
                let item = self.item();
                order.order_items.push(item);
            }
            _ => {
                order.notes = NOTES[self.rng.random_range(0..NOTES.len())].to_owned();
                order.shipping_information.phone = format!(
                    "({}) 555-{:04}",
                    self.rng.random_range(200..990u32),
                    self.rng.random_range(0..10_000u32)
                );
            }
        }
        order.recompute_totals();
        order.modification_date = at;
    }

    fn item(&mut self) -> OrderItem {
        let (pid, name, description, sku, price, cost, shippable) =
            CATALOG[self.rng.random_range(0..CATALOG.len())];
        let quantity = if shippable {
            self.rng.random_range(1..=4u32)
        } else {
            1
        };
        let discount = if self.rng.random_bool(0.15) {
            price / 10
        } else {
            0
        };
        let id = self.next_item_id;
        self.next_item_id += 1;
        OrderItem {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            kind: "Product",
            notes: String::new(),
            quantity,
            price: Money(price),
            cost: Money(cost),
            discount: Money(discount),
            product: Product {
                id: pid,
                name,
                description,
                sku,
                shippable,
                taxable: shippable,
            },
        }
    }

    fn affiliate(&mut self) -> u64 {
        // Keap writes 0 for "no affiliate".
        if self.rng.random_bool(0.8) {
            0
        } else {
            self.rng.random_range(1..=20)
        }
    }

    fn take_shipping_id(&mut self) -> u64 {
        let id = self.next_shipping_id;
        self.next_shipping_id += 1;
        id
    }
}

/// The pool contact with this id; the same id always yields the same person.
fn contact(id: u64) -> Contact {
    let pick = |list: &[&'static str], mul: u64| -> &'static str {
        list[usize::try_from(id.wrapping_mul(mul) % list.len() as u64).unwrap_or(0)]
    };
    let first = pick(FIRST_NAMES, 7);
    let last = pick(LAST_NAMES, 13);
    Contact {
        id,
        email: format!(
            "{}.{}{}@example.com",
            first.to_lowercase(),
            last.to_lowercase(),
            id
        ),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        company_name: pick(COMPANIES, 3).to_owned(),
        job_title: pick(JOB_TITLES, 5).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn same_seed_same_orders() {
        let (mut a, mut b) = (Generator::new(7), Generator::new(7));
        for id in 1..50 {
            let (x, y) = (a.new_order(id, at()), b.new_order(id, at()));
            assert_eq!(
                serde_json::to_string(&x).unwrap(),
                serde_json::to_string(&y).unwrap()
            );
        }
        let mut c = Generator::new(8);
        let differs = (1..10).any(|id| {
            serde_json::to_string(&a.new_order(id, at())).unwrap()
                != serde_json::to_string(&c.new_order(id, at())).unwrap()
        });
        assert!(differs);
    }

    #[test]
    fn totals_add_up_after_updates() {
        let mut g = Generator::new(1);
        for id in 1..200 {
            let mut o = g.new_order(id, at());
            for _ in 0..5 {
                g.update(&mut o, at());
                let items: i64 = o
                    .order_items
                    .iter()
                    .map(|i| i.price.0 * i64::from(i.quantity) - i.discount.0)
                    .sum();
                assert_eq!(o.total.0, items);
                assert_eq!(o.total_due.0, (o.total.0 - o.total_paid.0).max(0));
                assert_eq!(o.is_paid(), o.total_due.0 == 0 && o.total.0 > 0);
            }
        }
    }

    #[test]
    fn json_uses_keap_field_names_and_dates() {
        let o = Generator::new(3).new_order(42, at());
        let v: serde_json::Value = serde_json::to_value(&o).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["modification_date"], "2024-05-01T12:00:00.000+0000");
        for key in [
            "title",
            "status",
            "total",
            "total_paid",
            "total_due",
            "creation_date",
            "order_date",
            "contact",
            "order_items",
            "shipping_information",
            "lead_affiliate_id",
            "sales_affiliate_id",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(v["order_items"][0]["product"]["sku"].is_string());
        assert!(v["contact"]["email"].as_str().unwrap().contains('@'));
    }
}
