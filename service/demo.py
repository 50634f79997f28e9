"""Demo data (``lifecycle demo-data``): a deterministic, realistic stream of provider events.

Each provider gets a whole life story (applications, admission, deposit, violations,
deductions, exits, expulsions, re-applications), told with business times that only move
forward; the stories are then merged by time into one stream, one JSON line per Kafka
record. A small share of the records is deliberately bad (malformed) or re-sent
(duplicates), and some events break the rulebook (refused), so every outcome shows up.

Everything comes from one ``random.Random(seed)``: the same arguments give the same bytes.
The contact names and phone numbers are invented; they stand for personal data.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Final, Literal

from lifecycle.rules import DEPOSIT_FEN, Capability, Clause
from lifecycle.uscc import ALPHABET, check_character

SOURCE: Final = "/taobao-live/provider-admin"
#: Business times are written with the Asia/Shanghai offset, so day counting is literal.
CST: Final = timezone(timedelta(hours=8))
#: No event happens after this day (the demo's "now" is a few weeks later).
END: Final = date(2026, 11, 1)

Outcome = Literal["accepted", "refused", "malformed", "duplicate"]


@dataclass(frozen=True)
class _City:
    name: str  # entity_city / service_city
    prefix: str  # how company names start
    area: str  # administrative division code inside the USCC
    trade: str  # the industrial belt


CITIES: Final = (
    _City("义乌", "义乌市", "330782", "小商品"),
    _City("温州", "温州市", "330302", "鞋服"),
    _City("泉州", "泉州市", "350503", "鞋服"),
    _City("晋江", "晋江市", "350582", "运动鞋"),
    _City("东莞", "东莞市", "441900", "电子"),
    _City("佛山", "佛山市", "440606", "家具"),
    _City("中山", "中山市", "442000", "灯饰"),
    _City("汕头", "汕头市", "440515", "玩具"),
    _City("潮州", "潮州市", "445102", "陶瓷"),
    _City("揭阳", "揭阳市", "445202", "五金"),
    _City("苏州", "苏州市", "320508", "婚纱"),
    _City("常熟", "常熟市", "320581", "服装"),
    _City("南通", "南通市", "320612", "家纺"),
    _City("临沂", "临沂市", "371302", "商贸"),
    _City("曹县", "曹县", "371721", "汉服"),
    _City("白沟", "白沟新城", "130684", "箱包"),
    _City("平湖", "平湖市", "330482", "羽绒服"),
    _City("海宁", "海宁市", "330481", "皮革"),
    _City("织里", "湖州织里", "330502", "童装"),
    _City("株洲", "株洲市", "430203", "服饰"),
)

_BRANDS: Final = (
    "星辰", "云帆", "锦程", "蓝海", "启航", "汇通", "鼎盛", "宏图", "优品", "嘉禾",
    "华彩", "乐购", "聚力", "新潮", "盛世", "博远", "正和", "天禧", "凯旋", "恒信",
    "青禾", "米果", "万象", "兴邦", "同创", "远景", "未来", "鲸选", "好物", "立方",
    "拾光", "初心", "尚品", "海纳", "金桥", "瑞丰", "东方", "百川", "致远", "创想",
    "橙子", "森屿", "火炬",
)  # fmt: skip
_COMPANY_KINDS: Final = (
    "电商服务有限公司",
    "电子商务有限公司",
    "网络科技有限公司",
    "直播科技有限公司",
    "供应链管理有限公司",
    "文化传媒有限公司",
    "{trade}直播服务有限公司",
    "{trade}产业服务有限公司",
)
_SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许邓冯韩曹曾彭蔡潘田董袁于余叶蒋"
    "杜苏魏程吕丁沈任姚卢傅钟姜崔谭廖范汪陆金石戴贾韦夏邱方侯邹熊孟秦白江薛尹段雷黎史龙陶"
)
_GIVEN: Final = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲建国志鹏飞雪梅婷浩宇晨欣怡佳琪子涵俊"
)
_PHONE_PREFIXES: Final = (
    *(f"13{d}" for d in range(10)),
    *(f"15{d}" for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)),
    *(f"18{d}" for d in range(10)),
)
_ADVANTAGES: Final = (
    "团队来自本地头部直播基地,已服务产业带商家120余家",
    "创始团队在淘宝直播从事机构运营5年以上,自有直播基地3000平方米",
    "与本地产业带商会签订战略合作,覆盖工厂型商家200余家",
    "由本地龙头企业投资设立,具备完整供应链与主播孵化体系",
)
_CAPITALS_FEN: Final = tuple(
    cny * 100 for cny in (500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000)
)
_LOW_CAPITALS_FEN: Final = tuple(cny * 100 for cny in (100_000, 200_000, 300_000, 450_000))

_VIOLATIONS: Final[dict[str, str]] = {
    "A2.1-1": "提交的营业执照注册资本与实际不符",
    "A2.1-2": "提报的签约商家中有3家无真实有效的签约合同",
    "A2.2-1": "向签约商家额外收取直播坑位费",
    "A2.2-2": "未按合作协议提供代运营服务,商家投诉未妥善解决",
    "A2.2-3": "报名参加平台产业带直播节后未经许可擅自退出",
    "A2.2-4": "直播间观看与成交数据存在刷量造假",
    "A2.2-5": "泄露签约商家联系方式给第三方",
    "A2.2-6": "冒用淘宝直播名义发布招商信息",
    "A2.2-7": "实际开播主播与机构提交的主播账户身份信息不符",
    "A2.3-1": "违反《淘宝直播机构管理规范》相关规定",
    "A2.3-2": "季度运营考核指标未达标",
    "A2.3-3": "违反《机构及主播绑定关系管理规则》擅自解绑主播",
}
#: Clauses of ordinary conduct violations, weighted towards the common ones.
_COMMON_VIOLATIONS: Final = (
    "A2.2-2", "A2.2-2", "A2.2-3", "A2.2-3", "A2.2-1", "A2.2-4", "A2.2-7", "A2.3-1",
    "A2.3-2", "A2.3-2", "A2.3-3", "A2.1-2", "A2.2-6",
)  # fmt: skip
#: Clauses serious enough for an A3-2 expulsion.
_GRAVE_VIOLATIONS: Final = ("A2.1-1", "A2.1-2", "A2.2-1", "A2.2-4", "A2.2-5", "A2.2-6")

# A1.1 defects of an application: the clause each breaks and how a reviewer words it.
_DEFECT_CLAUSE: Final[dict[str, Clause]] = {
    "individual_business": Clause.A1_1_1_1,
    "unverified": Clause.A1_1_1_1,
    "not_taxpayer": Clause.A1_1_1_2a,
    "low_capital": Clause.A1_1_1_2b,
    "young": Clause.A1_1_1_2c,
    "store_account": Clause.A1_1_1_4,
    "city_mismatch": Clause.A1_1_1_5,
    "capabilities": Clause.A1_1_2,
}
_CLAUSE_ORDER: Final = (
    Clause.A1_1_1_1,
    Clause.A1_1_1_2a,
    Clause.A1_1_1_2b,
    Clause.A1_1_1_2c,
    Clause.A1_1_1_4,
    Clause.A1_1_1_5,
    Clause.A1_1_2,
)
_DECLINE_TEXT: Final[dict[Clause, str]] = {
    Clause.A1_1_1_1: "经营主体非企业或未完成淘宝实名认证",
    Clause.A1_1_1_2a: "主体非一般纳税人",
    Clause.A1_1_1_2b: "注册资本不足50万元",
    Clause.A1_1_1_2c: "注册时间未满1年且未提供主体优势说明",
    Clause.A1_1_1_4: "申请账号为店铺账号",
    Clause.A1_1_1_5: "经营主体所在城市与服务城市不一致",
    Clause.A1_1_2: "未同时具备BD拓展、运营、陪跑、培训、投流、货品整合分发能力",
}


@dataclass
class _Planned:
    """One event of a provider's story and what the rules will make of it."""

    time: datetime
    provider: int
    seq: int
    type: str
    subject: str
    data: dict[str, Any]
    outcome: Literal["accepted", "refused"] = "accepted"
    codes: tuple[str, ...] = ()


@dataclass
class _Exit:
    kind: Literal["exited", "expelled"]
    on: date
    ground: str | None = None
    readmission: dict[str, Any] | None = None


@dataclass
class _Story:
    """One provider's timeline; business time only moves forward."""

    rng: random.Random
    index: int
    uscc: str
    city: _City
    application: dict[str, Any]
    now: datetime
    events: list[_Planned] = field(default_factory=list)

    # --- time and emitting -------------------------------------------------------------

    def _moment(self, day: date) -> datetime:
        rng = self.rng
        moment = datetime.combine(
            day, time(rng.randint(9, 21), rng.randint(0, 59), rng.randint(0, 59)), CST
        )
        if moment <= self.now:
            moment = self.now + timedelta(
                minutes=self.rng.randint(3, 90), seconds=rng.randint(0, 59)
            )
        self.now = moment
        return moment

    def on(
        self,
        day: date,
        event_type: str,
        data: dict[str, Any],
        refused: tuple[str, ...] = (),
    ) -> date:
        """Emit an event on ``day`` (or just after the previous one); its business date."""
        moment = self._moment(day)
        self.events.append(
            _Planned(
                moment,
                self.index,
                len(self.events),
                "provider." + event_type,
                self.uscc,
                copy.deepcopy(data),
                "refused" if refused else "accepted",
                tuple(str(c) for c in refused),
            )
        )
        return moment.date()

    def after(
        self,
        lo: int,
        hi: int,
        event_type: str,
        data: dict[str, Any],
        refused: tuple[str, ...] = (),
    ) -> date:
        """Emit an event ``lo``…``hi`` days after the previous one."""
        day = self.now.date() + timedelta(days=self.rng.randint(lo, hi))
        return self.on(day, event_type, data, refused)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # --- payloads ----------------------------------------------------------------------

    def defective(
        self, allowed: tuple[str, ...] = tuple(_DEFECT_CLAUSE)
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The application with one or two A1.1 defects, and the clauses they break."""
        rng = self.rng
        defects = rng.sample(allowed, 2 if rng.random() < 0.25 else 1)
        data = copy.deepcopy(self.application)
        for defect in defects:
            if defect == "individual_business":
                data["entity_type"] = rng.choice(
                    ["individual_business", "individual_business", "individual", "other"]
                )
            elif defect == "unverified":
                data["real_name_verified"] = False
            elif defect == "not_taxpayer":
                data["general_taxpayer"] = False
            elif defect == "low_capital":
                data["registered_capital_fen"] = rng.choice(_LOW_CAPITALS_FEN)
            elif defect == "young":
                # A new company without the statement; the fixed application adds one.
                registered = self.now.date() - timedelta(days=rng.randint(30, 300))
                data["registered_on"] = registered.isoformat()
                data["advantage_statement"] = None
                self.application["registered_on"] = registered.isoformat()
                self.application["advantage_statement"] = rng.choice(_ADVANTAGES)
            elif defect == "store_account":
                data["is_store_account"] = True
            elif defect == "city_mismatch":
                other = rng.choice([c for c in CITIES if c.name != self.city.name])
                data["service_city"] = other.name
            elif defect == "capabilities":
                missing = set(rng.sample(list(Capability), rng.randint(1, 3)))
                data["capabilities"] = [c.value for c in Capability if c not in missing]
        broken = {_DEFECT_CLAUSE[d] for d in defects}
        return data, tuple(str(c) for c in _CLAUSE_ORDER if c in broken)

    def decline(self, codes: tuple[str, ...]) -> None:
        reason = ";".join(_DECLINE_TEXT[Clause(c)] for c in codes)
        self.after(3, 25, "ApplicationDeclined", {"reason": reason, "clauses": list(codes)})

    def admitted(self) -> dict[str, Any]:
        return {"decided_by": "产业带运营-" + _person(self.rng)}

    def deposit(self, amount: int) -> dict[str, Any]:
        return {"amount_fen": amount, "payment_ref": f"DEP{self.rng.randint(10**11, 10**12 - 1)}"}

    def violation(self, clause: str, severity: str | None = None) -> None:
        rng = self.rng
        severity = severity or rng.choices(["minor", "serious", "severe"], [6, 3, 1])[0]
        evidence = None if rng.random() < 0.2 else f"EV-{rng.randint(10**7, 10**8 - 1)}"
        self.after(
            15,
            200,
            "ViolationRecorded",
            {
                "clause": clause,
                "severity": severity,
                "description": _VIOLATIONS[clause],
                "evidence_ref": evidence,
            },
        )

    # --- the story ---------------------------------------------------------------------

    def tell(self) -> list[_Planned]:
        start = self.now.date()
        r = self.rng.random()
        if r < 0.05:
            # A1.1 not met: the platform declines; some fix it and apply again.
            data, codes = self.defective()
            self.on(start, "Applied", data)
            self.decline(codes)
            if not self.chance(0.4):
                return self.events
            start = self.now.date() + timedelta(days=self.rng.randint(20, 200))
        elif r < 0.075:
            # An admission of an application that fails A1.1: refused with each clause.
            data, codes = self.defective()
            self.on(start, "Applied", data)
            self.after(2, 20, "Admitted", self.admitted(), refused=codes)
            if not self.chance(0.7):
                return self.events  # still "applied", under review
            self.decline(codes)
            return self.events
        next_day: date | None = start
        for _ in range(3):
            assert next_day is not None
            ended = self.tenure(next_day)
            if ended is None:
                break
            next_day = self.after_exit(ended)
            if next_day is None:
                break
        return self.events

    def tenure(self, apply_on: date) -> _Exit | None:
        """Apply, get admitted, pay, serve; how (and whether) the tenure ended."""
        rng = self.rng
        self.on(apply_on, "Applied", self.application)
        if self.chance(0.02):
            # A second submission while the first is open.
            self.after(1, 10, "Applied", self.application, refused=(Clause.STATE,))
        if self.chance(0.03):
            return None  # still under review
        self.after(2, 20, "Admitted", self.admitted())
        paid = rng.random()
        if paid < 0.04:
            return None  # admitted, deposit not paid yet
        if paid < 0.20:
            first = rng.choice([3_000_000, 4_000_000, 5_000_000, 6_000_000])
            self.after(1, 10, "DepositPaid", self.deposit(first))
            if self.chance(0.1):
                return None  # the second instalment is still missing
            self.after(5, 45, "DepositPaid", self.deposit(DEPOSIT_FEN - first))
        else:
            self.after(0, 15, "DepositPaid", self.deposit(DEPOSIT_FEN))
        recorded = 0
        while recorded < 3 and self.chance(0.22):
            recorded += 1
            clause = rng.choice(_COMMON_VIOLATIONS)
            self.violation(clause)
            if self.chance(0.3):
                self.deduct(clause)
        if self.chance(0.03):
            self.deduct(Clause.A4_1)
        if self.chance(0.02):
            # A second admission of an admitted provider.
            self.after(20, 200, "Admitted", self.admitted(), refused=(Clause.STATE,))
        return self.ending()

    def deduct(self, clause: str) -> None:
        rng = self.rng
        amount = rng.choice([200_000, 500_000, 1_000_000, 2_000_000, 3_000_000])
        if clause == Clause.A4_1:
            reason = "按《淘宝直播机构保证金管理规则》扣除违约金"
        else:
            reason = f"因{_VIOLATIONS[clause]}赔付商家,从保证金中扣除"
        self.after(
            3,
            30,
            "DepositDeducted",
            {"amount_fen": amount, "reason": reason, "clause": str(clause)},
        )
        if self.chance(0.7):
            self.after(3, 40, "DepositPaid", self.deposit(amount))  # topped up again

    def ending(self) -> _Exit | None:
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            return None  # still serving
        if r < 0.59:
            # A voluntary exit before the merchants' fees are settled: refused.
            unsettled = rng.choices(["fees", "obligations", "both"], [7, 2, 1])[0]
            codes = {
                "fees": (Clause.A1_2_1_1,),
                "obligations": (Clause.A1_2_1_2,),
                "both": (Clause.A1_2_1_1, Clause.A1_2_1_2),
            }[unsettled]
            self.after(
                60,
                600,
                "Exited",
                {
                    "merchant_fees_settled": unsettled == "obligations",
                    "transaction_obligations_fulfilled": unsettled == "fees",
                },
                refused=tuple(str(c) for c in codes),
            )
            if not self.chance(0.5):
                return None
            return _Exit("exited", self.after(5, 60, "Exited", _settled()))
        if r < 0.80:
            return _Exit("exited", self.after(60, 700, "Exited", _settled()))
        return self.expel()

    def expel(self) -> _Exit:
        rng = self.rng
        ground = rng.choices(
            ["A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2"], [20, 25, 10, 20, 25]
        )[0]
        violations: list[str] = []
        readmission: dict[str, Any] | None = None
        if ground == "A1.2.2-2" and self.chance(0.5):
            violations = ["A2.3-2"]
        elif ground == "A1.2.2-3" and self.chance(0.5):
            violations = ["A2.2-5"]
        elif ground == "A1.2.2-4" and self.chance(0.6):
            violations = ["A2.3-1"]
        elif ground == "A3-2":
            violations = list(dict.fromkeys(rng.sample(_GRAVE_VIOLATIONS, rng.randint(1, 2))))
        for clause in violations:
            grave = ground in ("A3-2", "A1.2.2-3")
            self.violation(clause, rng.choice(["serious", "severe"]) if grave else None)
        expel_on = self.now.date() + timedelta(days=rng.randint(20, 500))
        if ground in ("A1.2.2-4", "A3-2"):
            kind = rng.choices(["until", "permanent", "none"], [50, 30, 20])[0]
            if kind == "until":
                days = rng.choice([90, 180, 365, 365, 730])
                readmission = {"until": (expel_on + timedelta(days=days)).isoformat()}
            elif kind == "permanent":
                readmission = {"permanent": True}
        on = self.on(
            expel_on,
            "Expelled",
            {"ground": ground, "violations": violations, "readmission": readmission},
        )
        return _Exit("expelled", on, ground, readmission)

    def after_exit(self, ended: _Exit) -> date | None:
        """Attempts to come back: refused ones, and the day of a proper new application."""
        rng = self.rng
        d = ended.on

        def too_early(code: str, lo: int, hi: int) -> None:
            self.on(
                d + timedelta(days=rng.randint(lo, hi)),
                "Applied",
                self.application,
                refused=(code,),
            )

        if ended.kind == "exited":
            r = rng.random()
            if r < 0.03:
                self.after(1, 30, "DepositPaid", self.deposit(DEPOSIT_FEN), refused=(Clause.STATE,))
                return None
            if r < 0.15:
                too_early(Clause.A1_3_5, 20, 170)
                return d + timedelta(days=rng.randint(180, 400)) if self.chance(0.5) else None
            if r < 0.50:
                return d + timedelta(days=180 + rng.choice([0, rng.randint(1, 300)]))
            return None
        if ended.ground == "A1.2.2-1":
            if not self.chance(0.5):
                return None
            if self.chance(0.5):
                # Still failing A1.1 (deposit aside): A1.3-2.
                data, _ = self.defective(
                    ("not_taxpayer", "low_capital", "capabilities", "city_mismatch")
                )
                self.after(30, 300, "Applied", data, refused=(Clause.A1_3_2,))
                if not self.chance(0.4):
                    return None
            return self.now.date() + timedelta(days=rng.randint(30, 300))
        if ended.ground == "A1.2.2-2":
            if not self.chance(0.45):
                return None
            if self.chance(0.33):
                too_early(Clause.A1_3_3, 20, 170)
                if not self.chance(0.5):
                    return None
            return d + timedelta(days=rng.randint(180, 420))
        if ended.ground == "A1.2.2-3":
            if self.chance(0.3):
                too_early(Clause.A1_3_4, 30, 700)
            return None
        # A1.2.2-4 and A3-2: as the restriction that came with the expulsion says.
        if ended.readmission is None:
            return None  # manual review (A1.4): nobody guesses
        if ended.readmission.get("permanent"):
            if self.chance(0.25):
                too_early(Clause.A1_3_1, 30, 700)
            return None
        until = date.fromisoformat(ended.readmission["until"])
        if not self.chance(0.4):
            return None
        if self.chance(0.33) and (until - d).days > 20:
            too_early(Clause.A1_3_1, 5, (until - d).days - 1)
        return until + timedelta(days=rng.randint(0, 120))


def _settled() -> dict[str, Any]:
    return {"merchant_fees_settled": True, "transaction_obligations_fulfilled": True}


def _person(rng: random.Random) -> str:
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice([1, 2, 2])))
    return rng.choice(_SURNAMES) + given


def _phone(rng: random.Random) -> str:
    return rng.choice(_PHONE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))


def _org_code(rng: random.Random) -> str:
    """A GB 11714 organisation code (8 characters and its check character)."""
    if rng.random() < 0.5:
        body = "MA" + "".join(rng.choice(ALPHABET) for _ in range(6))  # newer registrations
    else:
        body = "".join(rng.choice("0123456789") for _ in range(8))
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(
        (int(ch) if ch.isdigit() else ord(ch) - 55) * w for ch, w in zip(body, weights, strict=True)
    )
    check = 11 - total % 11
    return body + ("X" if check == 10 else "0" if check == 11 else str(check))


def _uscc(rng: random.Random, city: _City) -> str:
    first17 = "91" + city.area + _org_code(rng)  # 9: market regulator, 1: enterprise
    return first17 + check_character(first17)


def _company(rng: random.Random, city: _City, taken: set[str]) -> str:
    name = ""
    for _ in range(20):
        kind = rng.choice(_COMPANY_KINDS).format(trade=city.trade)
        name = city.prefix + rng.choice(_BRANDS) + kind
        if name not in taken:
            break
    taken.add(name)
    return name


def _application(rng: random.Random, city: _City, company: str, first: date) -> dict[str, Any]:
    if rng.random() < 0.08:
        registered = first - timedelta(days=rng.randint(90, 330))
        statement: str | None = rng.choice(_ADVANTAGES)
    else:
        registered = first - timedelta(days=rng.randint(400, 5500))
        statement = None
    capabilities = [c.value for c in Capability]
    rng.shuffle(capabilities)
    return {
        "company_name": company,
        "entity_type": "enterprise",
        "real_name_verified": True,
        "general_taxpayer": True,
        "registered_capital_fen": rng.choice(_CAPITALS_FEN),
        "registered_on": registered.isoformat(),
        "advantage_statement": statement,
        "is_store_account": False,
        "entity_city": city.name,
        "service_city": city.name,
        "capabilities": capabilities,
        "contact": {"name": _person(rng), "phone": _phone(rng)},
    }


def _plan(rng: random.Random, providers: int, start: date) -> list[_Planned]:
    """Every provider's story, merged by business time."""
    if start >= END - timedelta(days=60):
        raise ValueError(f"start must be before {END - timedelta(days=60)}")
    span = (END - start).days - 45
    usccs: set[str] = set()
    companies: set[str] = set()
    planned: list[_Planned] = []
    for index in range(providers):
        city = rng.choice(CITIES)
        uscc = _uscc(rng, city)
        while uscc in usccs:
            uscc = _uscc(rng, city)
        usccs.add(uscc)
        first = start + timedelta(days=rng.randint(0, span))
        story = _Story(
            rng,
            index,
            uscc,
            city,
            _application(rng, city, _company(rng, city, companies), first),
            datetime.combine(first, time(0, 0), CST),
        )
        planned.extend(e for e in story.tell() if e.time.date() <= END)
    planned.sort(key=lambda e: (e.time, e.provider, e.seq))
    return planned


def _envelope(ce_id: str, event: _Planned) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": ce_id,
        "source": SOURCE,
        "type": event.type,
        "subject": event.subject,
        "time": event.time.isoformat(),
        "datacontenttype": "application/json",
        "data": copy.deepcopy(event.data),
    }


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _malformed(rng: random.Random, ce_id: str, event: _Planned) -> bytes:
    """A broken record next to ``event``: one of the ways upstream gets it wrong."""
    envelope = _envelope(ce_id, event)
    kind = rng.choice(
        ["invalid_json", "unknown_type", "bad_uscc", "naive_time", "negative_amount", "extra"]
    )
    if kind == "invalid_json":
        text = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        return text[: rng.randint(len(text) // 3, len(text) - 2)].encode("utf-8")
    if kind == "unknown_type":
        envelope["type"] = rng.choice(
            ["provider.Suspended", "provider.Renamed", "provider.DepositRefunded"]
        )
    elif kind == "bad_uscc":
        good = event.subject[17]
        envelope["subject"] = event.subject[:17] + rng.choice(ALPHABET.replace(good, ""))
    elif kind == "naive_time":
        envelope["time"] = event.time.replace(tzinfo=None).isoformat()
    elif kind == "negative_amount":
        envelope["type"] = "provider.DepositPaid"
        envelope["data"] = {
            "amount_fen": -DEPOSIT_FEN,
            "payment_ref": f"DEP{rng.randint(10**11, 10**12 - 1)}",
        }
    else:
        envelope["data"]["remark"] = "补录"
    return _dumps(envelope)


def _records(
    providers: int, seed: int, start: date
) -> Iterator[tuple[bytes, Outcome, tuple[str, ...]]]:
    """Each record with the outcome (and refusal codes) the rulebook gives it."""
    rng = random.Random(seed)
    planned = _plan(rng, providers, start)
    number = 0
    resends: list[tuple[int, bytes]] = []  # (emit before this index, the record's bytes)
    for index, event in enumerate(planned):
        while resends and resends[0][0] <= index:
            yield resends.pop(0)[1], "duplicate", ()
        number += 1
        line = _dumps(_envelope(f"demo-{number:07d}", event))
        yield line, event.outcome, event.codes
        if event.outcome == "accepted" and rng.random() < 0.005:
            # An exact re-send of an accepted record, a little later in the stream.
            resends.append((index + rng.randint(1, 60), line))
            resends.sort(key=lambda r: r[0])
        if rng.random() < 0.01:
            number += 1
            yield _malformed(rng, f"demo-{number:07d}", event), "malformed", ()
    for _, line in resends:
        yield line, "duplicate", ()


def generate(
    providers: int = 2000, seed: int = 7, start: date = date(2024, 1, 1)
) -> Iterator[bytes]:
    """The demo stream: one JSON line per Kafka record (UTF-8, no trailing newline)."""
    for line, _, _ in _records(providers, seed, start):
        yield line


def write(path: Path, providers: int, seed: int) -> int:
    """Write the demo stream to ``path``, one record a line; how many records."""
    count = 0
    with path.open("wb") as handle:
        for line in generate(providers, seed):
            handle.write(line + b"\n")
            count += 1
    return count
