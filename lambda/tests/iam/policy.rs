//! The functions' IAM policies as template.yaml gives them, with the intrinsics resolved to
//! the test's deployment, and an evaluator of AWS's rules for identity policies (the subset
//! the template uses: Allow/Deny, Action and Resource wildcards, StringLike/StringEquals/
//! ArnLike/ArnEquals/Bool conditions; a key the request lacks fails its condition). Anything
//! else in a policy stops the test with what to add here, so nothing is silently ignored.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use serde_yaml::Value as Yaml;

/// The names the template's intrinsics resolve to in the test: moto's default account and
/// region, a stack named `longhaul` (so its state machine is `longhaul-jobs`).
#[derive(Debug, Clone)]
pub struct Deployment {
    pub account: String,
    pub region: String,
    pub stack: String,
    pub table: String,
    pub bucket: String,
    pub state_machine_arn: String,
    /// Logical id → resource type, from the template.
    pub types: BTreeMap<String, String>,
}

impl Deployment {
    pub fn table_arn(&self, table: &str) -> String {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{table}",
            self.region, self.account
        )
    }

    pub fn function_arn(&self, logical_id: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{logical_id}",
            self.region, self.account
        )
    }

    /// `!GetAtt NAME.Arn`.
    fn arn_of(&self, name: &str) -> String {
        match self.types.get(name).map(String::as_str) {
            Some("AWS::DynamoDB::Table") => self.table_arn(&self.table),
            Some("AWS::S3::Bucket") => format!("arn:aws:s3:::{}", self.bucket),
            Some("AWS::Serverless::Function") => self.function_arn(name),
            Some("AWS::Serverless::StateMachine") => self.state_machine_arn.clone(),
            other => panic!("the IAM test cannot resolve {name}.Arn ({other:?}); add it"),
        }
    }

    /// `!Ref NAME` (and `${NAME}` in a `!Sub`).
    fn reference(&self, name: &str) -> String {
        match name {
            "AWS::Partition" => "aws".into(),
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => self.account.clone(),
            "AWS::StackName" => self.stack.clone(),
            _ => match self.types.get(name).map(String::as_str) {
                Some("AWS::DynamoDB::Table") => self.table.clone(),
                Some("AWS::S3::Bucket") => self.bucket.clone(),
                Some("AWS::Serverless::StateMachine") => self.state_machine_arn.clone(),
                Some("AWS::Serverless::Function") => name.to_string(),
                other => panic!("the IAM test cannot resolve !Ref {name} ({other:?}); add it"),
            },
        }
    }

    fn sub(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in !Sub {text:?}"))
                + start;
            let name = &rest[start + 2..end];
            out.push_str(&match name.strip_suffix(".Arn") {
                Some(resource) => self.arn_of(resource),
                None => self.reference(name),
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A template value with its intrinsics resolved, as JSON.
    pub fn resolve(&self, v: &Yaml) -> Value {
        match v {
            Yaml::Null => Value::Null,
            Yaml::Bool(b) => json!(b),
            Yaml::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
            Yaml::String(s) => json!(s),
            Yaml::Sequence(items) => Value::Array(items.iter().map(|i| self.resolve(i)).collect()),
            Yaml::Mapping(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let k = k.as_str().expect("a string key").to_string();
                        (k, self.resolve(v))
                    })
                    .collect(),
            ),
            Yaml::Tagged(t) => {
                let tag = t.tag.to_string();
                let arg = t.value.as_str().unwrap_or_else(|| {
                    panic!("the IAM test resolves only scalar {tag}, not {:?}", t.value)
                });
                match tag.trim_start_matches('!') {
                    "GetAtt" => match arg.strip_suffix(".Arn") {
                        Some(name) => json!(self.arn_of(name)),
                        None => panic!("the IAM test resolves only !GetAtt NAME.Arn, not {arg}"),
                    },
                    "Ref" => json!(self.reference(arg)),
                    "Sub" => json!(self.sub(arg)),
                    other => panic!("the IAM test cannot resolve !{other}; add it"),
                }
            }
        }
    }
}

/// A Rust function of template.yaml: its logical id, `LONGHAUL_FUNCTION`, and its policy.
#[derive(Debug, Clone)]
pub struct FunctionPolicy {
    pub logical_id: String,
    pub name: String,
    pub policy: Policy,
}

/// The Rust functions (the one bootstrap) and the logical ids of the others (Python and
/// Node steps, which run user code in their own runtime).
pub fn functions(template: &Yaml, d: &Deployment) -> (Vec<FunctionPolicy>, Vec<String>) {
    let mut rust = Vec::new();
    let mut other = Vec::new();
    for (id, r) in template["Resources"].as_mapping().expect("Resources") {
        let id = id.as_str().expect("a logical id").to_string();
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let p = &r["Properties"];
        if !p["Runtime"].is_null() {
            other.push(id);
            continue;
        }
        let name = p["Environment"]["Variables"]["LONGHAUL_FUNCTION"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has no LONGHAUL_FUNCTION"))
            .to_string();
        let mut statements = Vec::new();
        for item in p["Policies"].as_sequence().into_iter().flatten() {
            let item = d.resolve(item);
            match item.get("Statement") {
                Some(Value::Array(s)) => statements.extend(s.iter().cloned()),
                Some(s @ Value::Object(_)) => statements.push(s.clone()),
                // A managed policy or a SAM policy template (LambdaInvokePolicy, ...): none
                // of the Rust functions has one today.
                _ => panic!("{id}: the IAM test cannot expand the policy {item}; add it"),
            }
        }
        let doc = json!({"Version": "2012-10-17", "Statement": statements});
        rust.push(FunctionPolicy {
            policy: Policy::parse(&id, doc),
            logical_id: id,
            name,
        });
    }
    (rust, other)
}

/// One authorization AWS makes for a request: an action on a resource, with the request's
/// condition keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Authorization {
    pub action: String,
    pub resource: String,
    pub context: Vec<(String, String)>,
    /// Why AWS makes this check (for failure messages).
    pub why: String,
}

impl Authorization {
    pub fn new(action: &str, resource: impl Into<String>, why: impl Into<String>) -> Self {
        Authorization {
            action: action.to_string(),
            resource: resource.into(),
            context: Vec::new(),
            why: why.into(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.context.push((key.to_string(), value.into()));
        self
    }
}

impl std::fmt::Display for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        for (k, v) in &self.context {
            write!(f, " [{k}={v:?}]")?;
        }
        write!(f, " ({})", self.why)
    }
}

#[derive(Debug, Clone)]
struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// Which statement, action pattern and resource pattern allowed a request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub statement: usize,
    pub action: String,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed(Grant),
    /// No statement allows it.
    ImplicitDeny,
    /// A Deny statement matches.
    ExplicitDeny(usize),
}

/// An identity policy (the statements of every policy a function's role has).
#[derive(Debug, Clone)]
pub struct Policy {
    doc: Value,
    statements: Vec<Statement>,
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .unwrap_or_else(|| panic!("{what}: {x} is not a string"))
                    .to_string()
            })
            .collect(),
        other => panic!("{what}: {other} is neither a string nor a list"),
    }
}

const OPERATORS: [&str; 5] = ["StringEquals", "StringLike", "ArnEquals", "ArnLike", "Bool"];

impl Policy {
    /// Parses a policy document; an element the evaluator does not model stops the test.
    pub fn parse(owner: &str, doc: Value) -> Policy {
        let mut statements = Vec::new();
        for (i, s) in doc["Statement"]
            .as_array()
            .expect("Statement is a list")
            .iter()
            .enumerate()
        {
            let o = s.as_object().expect("a statement is an object");
            for k in o.keys() {
                assert!(
                    ["Sid", "Effect", "Action", "Resource", "Condition"].contains(&k.as_str()),
                    "{owner}: statement {i} has {k}, which the IAM test does not evaluate; add it"
                );
            }
            let allow = match s["Effect"].as_str() {
                Some("Allow") => true,
                Some("Deny") => false,
                other => panic!("{owner}: statement {i}: Effect {other:?}"),
            };
            let mut conditions = Vec::new();
            if let Some(c) = s.get("Condition") {
                for (operator, keys) in c.as_object().expect("Condition is an object") {
                    assert!(
                        OPERATORS.contains(&operator.as_str()),
                        "{owner}: statement {i}: condition operator {operator} is not evaluated by the IAM test; add it"
                    );
                    for (key, values) in keys.as_object().expect("condition keys") {
                        conditions.push(Condition {
                            operator: operator.clone(),
                            key: key.to_ascii_lowercase(),
                            values: strings(values, key),
                        });
                    }
                }
            }
            statements.push(Statement {
                allow,
                actions: strings(&s["Action"], "Action"),
                resources: strings(&s["Resource"], "Resource"),
                conditions,
            });
        }
        Policy { doc, statements }
    }

    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// The same policy with statement `index` left out (the test's own mutations).
    pub fn without_statement(&self, owner: &str, index: usize) -> Policy {
        let mut doc = self.doc.clone();
        doc["Statement"]
            .as_array_mut()
            .expect("statements")
            .remove(index);
        Policy::parse(owner, doc)
    }

    /// The index of the first statement that allows `action` on a resource `pattern`.
    pub fn statement_allowing(&self, action: &str, resource: &str) -> Option<usize> {
        self.statements.iter().position(|s| {
            s.allow
                && s.actions.iter().any(|a| a == action)
                && s.resources.iter().any(|r| r == resource)
        })
    }

    /// AWS's decision for one authorization: an explicit Deny wins, then any Allow.
    pub fn decide(&self, a: &Authorization) -> Decision {
        let mut allowed = None;
        for (i, s) in self.statements.iter().enumerate() {
            let Some(action) = s.actions.iter().find(|p| glob(p, &a.action, true)) else {
                continue;
            };
            let Some(resource) = s.resources.iter().find(|p| glob(p, &a.resource, false)) else {
                continue;
            };
            if !s.conditions.iter().all(|c| condition_holds(c, &a.context)) {
                continue;
            }
            if !s.allow {
                return Decision::ExplicitDeny(i);
            }
            allowed.get_or_insert(Grant {
                statement: i,
                action: action.clone(),
                resource: resource.clone(),
            });
        }
        allowed.map_or(Decision::ImplicitDeny, Decision::Allowed)
    }

    /// Every (statement, "Action" | "Resource", pattern) this policy allows: each must be
    /// used by some request, or it is more than the code needs.
    pub fn grants(&self) -> Vec<(usize, &'static str, String)> {
        let mut out = Vec::new();
        for (i, s) in self.statements.iter().enumerate().filter(|(_, s)| s.allow) {
            out.extend(s.actions.iter().map(|a| (i, "Action", a.clone())));
            out.extend(s.resources.iter().map(|r| (i, "Resource", r.clone())));
        }
        out
    }

    /// The grants an allowed authorization uses: every pattern of every Allow statement
    /// that matches it.
    pub fn uses(&self, a: &Authorization) -> Vec<(usize, &'static str, String)> {
        let mut out = Vec::new();
        for (i, s) in self.statements.iter().enumerate().filter(|(_, s)| s.allow) {
            let actions: Vec<&String> = s
                .actions
                .iter()
                .filter(|p| glob(p, &a.action, true))
                .collect();
            let resources: Vec<&String> = s
                .resources
                .iter()
                .filter(|p| glob(p, &a.resource, false))
                .collect();
            if actions.is_empty()
                || resources.is_empty()
                || !s.conditions.iter().all(|c| condition_holds(c, &a.context))
            {
                continue;
            }
            out.extend(actions.into_iter().map(|p| (i, "Action", p.clone())));
            out.extend(resources.into_iter().map(|p| (i, "Resource", p.clone())));
        }
        out
    }

    /// The policy as moto can enforce it. Moto checks S3 requests against the action and the
    /// bucket or object ARN, but DynamoDB and Step Functions requests only against the action
    /// (it authorizes them on resource `*`, which no ARN matches) and names TransactWriteItems
    /// by its operation (AWS checks PutItem per item). So those statements get Resource `*`
    /// (the evaluator checks their resources per request) and PutItem brings
    /// TransactWriteItems. Conditions are kept: moto ignores them (the evaluator does not).
    pub fn for_moto(&self) -> Value {
        let mut doc = self.doc.clone();
        for s in doc["Statement"].as_array_mut().expect("statements") {
            let mut actions = strings(&s["Action"], "Action");
            let services: std::collections::BTreeSet<&str> = actions
                .iter()
                .map(|a| a.split(':').next().unwrap_or(""))
                .collect();
            if services.iter().any(|s| ["dynamodb", "states"].contains(s)) {
                assert_eq!(
                    services.len(),
                    1,
                    "a statement mixing services: split it or teach the IAM test"
                );
                if actions.iter().any(|a| a == "dynamodb:PutItem") {
                    actions.push("dynamodb:TransactWriteItems".into());
                }
                s["Action"] = json!(actions);
                s["Resource"] = json!("*");
            }
        }
        doc
    }
}

fn condition_holds(c: &Condition, context: &[(String, String)]) -> bool {
    // A key the request does not carry fails the condition (no ...IfExists here).
    let Some((_, value)) = context.iter().find(|(k, _)| k.eq_ignore_ascii_case(&c.key)) else {
        return false;
    };
    c.values.iter().any(|expected| match c.operator.as_str() {
        "StringEquals" | "ArnEquals" => expected == value,
        "StringLike" | "ArnLike" => glob(expected, value, false),
        "Bool" => expected.eq_ignore_ascii_case(value),
        other => unreachable!("operator {other} is refused at parse"),
    })
}

/// IAM's wildcard match: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}
