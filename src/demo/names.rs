//! Names, places and contact details for synthetic people: common given and family names
//! grouped by heritage (so that a patient's name and preferred language go together), towns of
//! the Portland, Oregon area with their real ZIP codes, and reserved fictional phone numbers
//! (555-0100 to 555-0199) and e-mail domains (`example.com`, RFC 2606).

use super::rng::Rng;

/// Given and family names that go together, and the language some of their bearers prefer.
pub struct NameGroup {
    pub weight: u32,
    pub male: &'static [&'static str],
    pub female: &'static [&'static str],
    pub family: &'static [&'static str],
    /// BCP-47 code and English name of a language other than English.
    pub language: Option<(&'static str, &'static str)>,
    /// How often a patient of this group prefers that language.
    pub language_rate: f64,
}

pub static NAME_GROUPS: &[NameGroup] = &[
    NameGroup {
        weight: 50,
        male: &[
            "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph",
            "Thomas", "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Steven",
            "Paul", "Andrew", "Joshua", "Kevin", "Brian", "George", "Timothy", "Ryan", "Jacob",
            "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott",
            "Brandon", "Benjamin", "Samuel", "Gregory", "Alexander", "Patrick", "Frank",
            "Raymond", "Jack", "Dennis", "Jerry", "Tyler", "Aaron", "Henry", "Douglas", "Peter",
            "Noah", "Liam", "Oliver", "Elijah", "Lucas", "Mason", "Logan", "Ethan", "Owen",
            "Wyatt", "Caleb", "Hunter", "Connor", "Dylan", "Austin", "Walter", "Harold", "Carl",
            "Arthur", "Roger", "Keith",
        ],
        female: &[
            "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
            "Sarah", "Karen", "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley",
            "Kimberly", "Emily", "Donna", "Michelle", "Carol", "Amanda", "Dorothy", "Melissa",
            "Deborah", "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia", "Kathleen", "Amy",
            "Angela", "Shirley", "Anna", "Brenda", "Pamela", "Emma", "Nicole", "Helen",
            "Samantha", "Katherine", "Christine", "Debra", "Rachel", "Carolyn", "Janet",
            "Catherine", "Olivia", "Ava", "Charlotte", "Amelia", "Harper", "Evelyn", "Abigail",
            "Madison", "Ella", "Grace", "Zoë", "Chloë", "Renée", "Hannah", "Lily", "Natalie",
            "Avery", "Joan", "Judith", "Frances", "Marjorie", "Zoey",
        ],
        family: &[
            "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson",
            "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson",
            "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
            "Wright", "Scott", "Hill", "Green", "Adams", "Baker", "Nelson", "Carter", "Mitchell",
            "Roberts", "Campbell", "Evans", "Turner", "Parker", "Collins", "Edwards", "Stewart",
            "Morris", "Murphy", "Cook", "Rogers", "Morgan", "Peterson", "Cooper", "Reed",
            "Bailey", "Bell", "Kelly", "Howard", "Ward", "Cox", "Richardson", "Wood", "Watson",
            "Brooks", "Bennett", "Gray", "Hughes", "Price", "Sanders", "Myers", "Long", "Ross",
            "Foster", "Powell", "Jenkins", "Perry", "Russell", "Sullivan", "O'Brien",
            "O'Connor", "McCarthy", "Fitzgerald", "Hayes", "Graham", "Olson", "Hansen",
            "Larson", "Jensen", "Lindqvist", "Nygaard", "Kowalski", "Novak", "Hale", "Quinn",
        ],
        language: None,
        language_rate: 0.0,
    },
    NameGroup {
        weight: 18,
        male: &[
            "José", "Juan", "Luis", "Carlos", "Jorge", "Miguel", "Jesús", "Alejandro",
            "Francisco", "Antonio", "Manuel", "Pedro", "Ricardo", "Javier", "Fernando", "Diego",
            "Andrés", "Rafael", "Sergio", "Eduardo", "Mateo", "Santiago", "Sebastián", "Emiliano",
            "Adrián", "Iván", "Raúl", "Óscar", "Héctor", "Julián", "Ángel", "Martín",
        ],
        female: &[
            "María", "Guadalupe", "Juana", "Rosa", "Ana", "Carmen", "Sofía", "Isabella",
            "Valentina", "Camila", "Lucía", "Elena", "Gabriela", "Daniela", "Mariana", "Ximena",
            "Paola", "Alejandra", "Verónica", "Leticia", "Adriana", "Mónica", "Beatriz", "Inés",
            "Raquel", "Yesenia", "Natalia", "Renata", "Jimena", "Itzel",
        ],
        family: &[
            "García", "Rodríguez", "Martínez", "Hernández", "López", "González", "Pérez",
            "Sánchez", "Ramírez", "Torres", "Flores", "Rivera", "Gómez", "Díaz", "Reyes", "Cruz",
            "Morales", "Ortiz", "Gutiérrez", "Chávez", "Ramos", "Ruiz", "Álvarez", "Mendoza",
            "Vásquez", "Castillo", "Jiménez", "Moreno", "Romero", "Herrera", "Medina", "Aguilar",
            "Vargas", "Castro", "Guzmán", "Fernández", "Muñoz", "Salazar", "Núñez", "Ibáñez",
            "Peña", "Domínguez",
        ],
        language: Some(("es", "Spanish")),
        language_rate: 0.35,
    },
    NameGroup {
        weight: 9,
        male: &[
            "DeShawn", "Jamal", "Malik", "Darnell", "Terrence", "Andre", "Marcus", "Isaiah",
            "Xavier", "Jalen", "Darius", "Cedric", "Reginald", "Tyrone", "Jermaine",
        ],
        female: &[
            "Aaliyah", "Imani", "Jasmine", "Keisha", "Latoya", "Tiana", "Ebony", "Nia", "Destiny",
            "Jada", "Shanice", "Monique", "Tamika", "Kiara", "Ayana",
        ],
        family: &[
            "Washington", "Jefferson", "Banks", "Freeman", "Coleman", "Booker", "Gaines", "Mack",
            "Dixon", "Holmes", "Jackson", "Robinson", "Harris", "Williams", "Johnson", "Brown",
            "Simmons", "Bryant", "Alexander", "Hayes",
        ],
        language: None,
        language_rate: 0.0,
    },
    NameGroup {
        weight: 5,
        male: &[
            "Minh", "Anh", "Duc", "Huy", "Khoa", "Long", "Nam", "Phuc", "Quang", "Thanh", "Tuan",
            "Vinh", "Bao", "Hieu", "Dung",
        ],
        female: &[
            "Lan", "Linh", "Mai", "Ngoc", "Thao", "Trang", "Huong", "Hanh", "Phuong", "Thuy",
            "Nga", "Yen", "Vy", "Nhi", "Hoa",
        ],
        family: &[
            "Nguyen", "Tran", "Le", "Pham", "Hoang", "Phan", "Vu", "Vo", "Dang", "Bui", "Do",
            "Ho", "Ngo", "Duong", "Ly",
        ],
        language: Some(("vi", "Vietnamese")),
        language_rate: 0.4,
    },
    NameGroup {
        weight: 4,
        male: &[
            "Wei", "Jian", "Hao", "Jun", "Ming", "Lei", "Yang", "Tao", "Feng", "Bo", "Kai", "Zhen",
        ],
        female: &[
            "Mei", "Xiu", "Li", "Yan", "Jing", "Ling", "Hui", "Fang", "Xin", "Ying", "Lan", "Qing",
        ],
        family: &[
            "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu",
            "Sun", "Ma", "Zhu", "Hu", "Lin", "Guo", "He", "Gao", "Luo", "Wong", "Chan", "Lam",
        ],
        language: Some(("zh", "Chinese")),
        language_rate: 0.3,
    },
    NameGroup {
        weight: 3,
        male: &[
            "Oleksandr", "Andriy", "Dmytro", "Serhiy", "Mykola", "Volodymyr", "Yuriy", "Taras",
            "Bohdan", "Ivan", "Vasyl", "Petro",
        ],
        female: &[
            "Olena", "Nataliya", "Iryna", "Oksana", "Tetiana", "Yuliia", "Kateryna", "Svitlana",
            "Halyna", "Mariya", "Anastasiia", "Daria",
        ],
        family: &[
            "Kovalenko", "Shevchenko", "Bondarenko", "Tkachenko", "Kravchenko", "Melnyk", "Boyko",
            "Kovalchuk", "Savchenko", "Lysenko", "Petrenko", "Marchenko", "Rudenko", "Moroz",
            "Polishchuk",
        ],
        language: Some(("uk", "Ukrainian")),
        language_rate: 0.35,
    },
    NameGroup {
        weight: 4,
        male: &[
            "Hans", "Jürgen", "Klaus", "Stefan", "Matthias", "Lukas", "Felix", "Jonas", "Tobias",
            "Florian", "Sören", "Jörg",
        ],
        female: &[
            "Anja", "Birgit", "Katrin", "Sabine", "Ursula", "Heike", "Jana", "Lena", "Leonie",
            "Greta", "Zoë", "Käthe",
        ],
        family: &[
            "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
            "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
            "Schröder", "Neumann", "Zimmermann", "Braun", "Krüger", "Köhler", "Böhm", "Weiß",
        ],
        language: Some(("de", "German")),
        language_rate: 0.04,
    },
    NameGroup {
        weight: 2,
        male: &[
            "François", "Étienne", "Jérôme", "René", "Noël", "André", "Benoît", "Loïc", "Mathieu",
            "Théo",
        ],
        female: &[
            "Chloé", "Renée", "Noémie", "Hélène", "Amélie", "Léa", "Élodie", "Margaux", "Zoé",
            "Céline",
        ],
        family: &[
            "Dubois", "Lefèvre", "Bélanger", "Lévesque", "Girard", "Côté", "Gagnon", "Bouchard",
            "Roy", "Pelletier", "Thériault", "Fournier",
        ],
        language: Some(("fr", "French")),
        language_rate: 0.05,
    },
    NameGroup {
        weight: 2,
        male: &[
            "Min-jun", "Ji-hoon", "Seo-jun", "Hyun-woo", "Dong-hyun", "Sung-min", "Jae-won",
        ],
        female: &[
            "Ji-woo", "Seo-yeon", "Min-seo", "Ha-eun", "Soo-jin", "Eun-ji", "Hye-jin",
        ],
        family: &["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim"],
        language: Some(("ko", "Korean")),
        language_rate: 0.3,
    },
    NameGroup {
        weight: 3,
        male: &[
            "Arjun", "Rahul", "Vikram", "Amit", "Sanjay", "Rohan", "Aditya", "Ravi", "Anil",
            "Deepak", "Karan", "Nikhil",
        ],
        female: &[
            "Priya", "Ananya", "Aisha", "Kavya", "Neha", "Pooja", "Divya", "Sneha", "Meera",
            "Lakshmi", "Sunita", "Anjali",
        ],
        family: &[
            "Patel", "Shah", "Singh", "Kumar", "Sharma", "Gupta", "Reddy", "Rao", "Iyer",
            "Desai", "Mehta", "Chopra", "Nair", "Joshi",
        ],
        language: Some(("hi", "Hindi")),
        language_rate: 0.08,
    },
    NameGroup {
        weight: 2,
        male: &[
            "Mohamed", "Ahmed", "Omar", "Ali", "Yusuf", "Hassan", "Ibrahim", "Khalid", "Samir",
            "Tariq",
        ],
        female: &[
            "Fatima", "Amina", "Layla", "Mariam", "Nour", "Yasmin", "Zainab", "Hana", "Sara",
            "Rania",
        ],
        family: &[
            "Ali", "Mohamed", "Hassan", "Ahmed", "Haddad", "Nasser", "Farah", "Osman", "Khalil",
            "Mansour", "Saleh", "Aziz",
        ],
        language: Some(("ar", "Arabic")),
        language_rate: 0.25,
    },
];

/// Picks a name group by weight.
pub fn pick_group(rng: &mut Rng) -> &'static NameGroup {
    let total: u64 = NAME_GROUPS.iter().map(|g| u64::from(g.weight)).sum();
    let mut r = rng.below(total);
    for group in NAME_GROUPS {
        let w = u64::from(group.weight);
        if r < w {
            return group;
        }
        r -= w;
    }
    &NAME_GROUPS[0]
}

/// A town near the demo clinic.
pub struct Town {
    pub name: &'static str,
    pub state: &'static str,
    pub zips: &'static [&'static str],
    pub area_codes: &'static [&'static str],
    /// Portland-style addresses carry a quadrant prefix (`SE Hawthorne Blvd`).
    pub quadrants: bool,
}

pub static TOWNS: &[(Town, u32)] = &[
    (
        Town {
            name: "Portland",
            state: "OR",
            zips: &[
                "97201", "97202", "97203", "97205", "97206", "97209", "97210", "97211", "97212",
                "97213", "97214", "97215", "97216", "97217", "97218", "97219", "97220", "97221",
                "97227", "97230", "97232", "97233", "97236", "97239", "97266",
            ],
            area_codes: &["503", "971"],
            quadrants: true,
        },
        40,
    ),
    (
        Town {
            name: "Beaverton",
            state: "OR",
            zips: &["97005", "97006", "97007", "97008"],
            area_codes: &["503", "971"],
            quadrants: true,
        },
        8,
    ),
    (
        Town {
            name: "Hillsboro",
            state: "OR",
            zips: &["97123", "97124"],
            area_codes: &["503", "971"],
            quadrants: true,
        },
        6,
    ),
    (
        Town {
            name: "Gresham",
            state: "OR",
            zips: &["97030", "97080"],
            area_codes: &["503", "971"],
            quadrants: true,
        },
        6,
    ),
    (
        Town {
            name: "Tigard",
            state: "OR",
            zips: &["97223", "97224"],
            area_codes: &["503", "971"],
            quadrants: true,
        },
        4,
    ),
    (
        Town {
            name: "Lake Oswego",
            state: "OR",
            zips: &["97034", "97035"],
            area_codes: &["503"],
            quadrants: false,
        },
        3,
    ),
    (
        Town {
            name: "Milwaukie",
            state: "OR",
            zips: &["97222", "97267"],
            area_codes: &["503"],
            quadrants: true,
        },
        3,
    ),
    (
        Town {
            name: "Oregon City",
            state: "OR",
            zips: &["97045"],
            area_codes: &["503"],
            quadrants: false,
        },
        3,
    ),
    (
        Town {
            name: "Tualatin",
            state: "OR",
            zips: &["97062"],
            area_codes: &["503"],
            quadrants: true,
        },
        2,
    ),
    (
        Town {
            name: "West Linn",
            state: "OR",
            zips: &["97068"],
            area_codes: &["503"],
            quadrants: false,
        },
        2,
    ),
    (
        Town {
            name: "Happy Valley",
            state: "OR",
            zips: &["97086"],
            area_codes: &["503", "971"],
            quadrants: true,
        },
        2,
    ),
    (
        Town {
            name: "Forest Grove",
            state: "OR",
            zips: &["97116"],
            area_codes: &["503"],
            quadrants: false,
        },
        2,
    ),
    (
        Town {
            name: "Vancouver",
            state: "WA",
            zips: &[
                "98660", "98661", "98662", "98663", "98664", "98665", "98682", "98683", "98684",
                "98686",
            ],
            area_codes: &["360"],
            quadrants: true,
        },
        10,
    ),
    (
        Town {
            name: "Camas",
            state: "WA",
            zips: &["98607"],
            area_codes: &["360"],
            quadrants: true,
        },
        2,
    ),
    (
        Town {
            name: "Salem",
            state: "OR",
            zips: &["97301", "97302", "97304"],
            area_codes: &["503", "971"],
            quadrants: true,
        },
        2,
    ),
];

static STREETS: &[&str] = &[
    "Hawthorne", "Division", "Belmont", "Burnside", "Alberta", "Killingsworth", "Lombard",
    "Fremont", "Broadway", "Glisan", "Stark", "Powell", "Foster", "Holgate", "Woodstock",
    "Sandy", "Mississippi", "Multnomah", "Taylors Ferry", "Barbur", "Macadam", "Sunset",
    "Cedar Hills", "Murray", "Cornell", "Baseline", "Scholls Ferry", "Boones Ferry", "Oak",
    "Maple", "Pine", "Elm", "Birch", "Alder", "Willow", "Hemlock", "Spruce", "Cherry", "Park",
    "Lake", "Hill", "River", "Meadow", "Orchard", "Garden", "Highland", "Lincoln", "Jefferson",
    "Madison", "Washington", "Adams", "Jackson", "Clinton", "Grant", "Harrison",
];

static STREET_TYPES: &[(&str, u32)] = &[
    ("St", 30),
    ("Ave", 30),
    ("Blvd", 6),
    ("Rd", 10),
    ("Dr", 10),
    ("Ln", 5),
    ("Ct", 5),
    ("Way", 4),
    ("Pl", 3),
];

static QUADRANTS: &[(&str, u32)] = &[("SE", 30), ("NE", 30), ("N", 10), ("NW", 12), ("SW", 18)];

/// A home address: street lines, town, state and ZIP.
pub struct Address {
    pub lines: Vec<String>,
    pub town: &'static Town,
    pub zip: &'static str,
}

pub fn address(rng: &mut Rng) -> Address {
    let town = rng.weighted(TOWNS);
    let number = rng.int(100, 19_999);
    let street = rng.pick(STREETS);
    let kind = rng.weighted(STREET_TYPES);
    let mut line = if town.quadrants {
        format!("{number} {} {street} {kind}", rng.weighted(QUADRANTS))
    } else {
        format!("{number} {street} {kind}")
    };
    let mut lines = Vec::with_capacity(2);
    if rng.chance(0.18) {
        let unit = format!("Apt {}{}", rng.int(1, 40), ["", "A", "B", "C"][rng.index(4)]);
        lines.push(std::mem::take(&mut line));
        lines.push(unit);
    } else {
        lines.push(line);
    }
    Address {
        lines,
        town,
        zip: rng.pick(town.zips),
    }
}

/// A fictional phone number in the reserved 555-0100 to 555-0199 range.
pub fn phone(rng: &mut Rng, area_code: &str) -> String {
    format!("{area_code}-555-01{:02}", rng.below(100))
}

/// Folds a name to lower-case ASCII letters for an e-mail local part (`José` → `jose`,
/// `Weiß` → `weiss`); other characters (apostrophes, hyphens, spaces) are dropped.
pub fn ascii_fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'í' | 'ì' | 'î' | 'ï' => out.push('i'),
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => out.push('o'),
            'ú' | 'ù' | 'û' | 'ü' => out.push('u'),
            'ñ' => out.push('n'),
            'ç' => out.push('c'),
            'ß' => out.push_str("ss"),
            _ => {}
        }
    }
    out
}

/// A fictional e-mail address under a reserved example domain.
pub fn email(rng: &mut Rng, given: &str, family: &str) -> String {
    let domain = ["example.com", "example.org", "example.net"][rng.index(3)];
    let (g, f) = (ascii_fold(given), ascii_fold(family));
    match rng.below(3) {
        0 => format!("{g}.{f}@{domain}"),
        1 => format!("{g}{f}{}@{domain}", rng.int(1, 99)),
        _ => format!("{}{f}{}@{domain}", g.chars().next().unwrap_or('x'), rng.int(10, 999)),
    }
}
