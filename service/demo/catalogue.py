"""The demo's world: cities, companies, people, violations and their clauses."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta, timezone
from typing import Any, Final, Literal

from lifecycle.rules import Capability, Clause
from lifecycle.uscc import ALPHABET, check_character

SOURCE: Final = "/taobao-live/provider-admin"
#: Business times are written with the Asia/Shanghai offset, so day counting is literal.
CST: Final = timezone(timedelta(hours=8))
#: No event happens after this day (the demo's "now" is a few weeks later).
END: Final = date(2026, 11, 1)

Outcome = Literal["accepted", "refused", "malformed", "duplicate"]


@dataclass(frozen=True)
class City:
    name: str  # entity_city / service_city
    prefix: str  # how company names start
    area: str  # administrative division code inside the USCC
    trade: str  # the industrial belt


CITIES: Final = (
    City("义乌", "义乌市", "330782", "小商品"),
    City("温州", "温州市", "330302", "鞋服"),
    City("泉州", "泉州市", "350503", "鞋服"),
    City("晋江", "晋江市", "350582", "运动鞋"),
    City("东莞", "东莞市", "441900", "电子"),
    City("佛山", "佛山市", "440606", "家具"),
    City("中山", "中山市", "442000", "灯饰"),
    City("汕头", "汕头市", "440515", "玩具"),
    City("潮州", "潮州市", "445102", "陶瓷"),
    City("揭阳", "揭阳市", "445202", "五金"),
    City("苏州", "苏州市", "320508", "婚纱"),
    City("常熟", "常熟市", "320581", "服装"),
    City("南通", "南通市", "320612", "家纺"),
    City("临沂", "临沂市", "371302", "商贸"),
    City("曹县", "曹县", "371721", "汉服"),
    City("白沟", "白沟新城", "130684", "箱包"),
    City("平湖", "平湖市", "330482", "羽绒服"),
    City("海宁", "海宁市", "330481", "皮革"),
    City("织里", "湖州织里", "330502", "童装"),
    City("株洲", "株洲市", "430203", "服饰"),
)

BRANDS: Final = (
    "星辰", "云帆", "锦程", "蓝海", "启航", "汇通", "鼎盛", "宏图", "优品", "嘉禾",
    "华彩", "乐购", "聚力", "新潮", "盛世", "博远", "正和", "天禧", "凯旋", "恒信",
    "青禾", "米果", "万象", "兴邦", "同创", "远景", "未来", "鲸选", "好物", "立方",
    "拾光", "初心", "尚品", "海纳", "金桥", "瑞丰", "东方", "百川", "致远", "创想",
    "橙子", "森屿", "火炬",
)  # fmt: skip
COMPANY_KINDS: Final = (
    "电商服务有限公司",
    "电子商务有限公司",
    "网络科技有限公司",
    "直播科技有限公司",
    "供应链管理有限公司",
    "文化传媒有限公司",
    "{trade}直播服务有限公司",
    "{trade}产业服务有限公司",
)
SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许邓冯韩曹曾彭蔡潘田董袁于余叶蒋"
    "杜苏魏程吕丁沈任姚卢傅钟姜崔谭廖范汪陆金石戴贾韦夏邱方侯邹熊孟秦白江薛尹段雷黎史龙陶"
)
GIVEN: Final = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲建国志鹏飞雪梅婷浩宇晨欣怡佳琪子涵俊"
)
PHONE_PREFIXES: Final = (
    *(f"13{d}" for d in range(10)),
    *(f"15{d}" for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)),
    *(f"18{d}" for d in range(10)),
)
ADVANTAGES: Final = (
    "团队来自本地头部直播基地,已服务产业带商家120余家",
    "创始团队在淘宝直播从事机构运营5年以上,自有直播基地3000平方米",
    "与本地产业带商会签订战略合作,覆盖工厂型商家200余家",
    "由本地龙头企业投资设立,具备完整供应链与主播孵化体系",
)
CAPITALS_FEN: Final = tuple(
    cny * 100 for cny in (500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000)
)
LOW_CAPITALS_FEN: Final = tuple(cny * 100 for cny in (100_000, 200_000, 300_000, 450_000))

VIOLATIONS: Final[dict[str, str]] = {
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
COMMON_VIOLATIONS: Final = (
    "A2.2-2", "A2.2-2", "A2.2-3", "A2.2-3", "A2.2-1", "A2.2-4", "A2.2-7", "A2.3-1",
    "A2.3-2", "A2.3-2", "A2.3-3", "A2.1-2", "A2.2-6",
)  # fmt: skip
#: Clauses serious enough for an A3-2 expulsion.
GRAVE_VIOLATIONS: Final = ("A2.1-1", "A2.1-2", "A2.2-1", "A2.2-4", "A2.2-5", "A2.2-6")

# A1.1 defects of an application: the clause each breaks and how a reviewer words it.
DEFECT_CLAUSE: Final[dict[str, Clause]] = {
    "individual_business": Clause.A1_1_1_1,
    "unverified": Clause.A1_1_1_1,
    "not_taxpayer": Clause.A1_1_1_2a,
    "low_capital": Clause.A1_1_1_2b,
    "young": Clause.A1_1_1_2c,
    "store_account": Clause.A1_1_1_4,
    "city_mismatch": Clause.A1_1_1_5,
    "capabilities": Clause.A1_1_2,
}
CLAUSE_ORDER: Final = (
    Clause.A1_1_1_1,
    Clause.A1_1_1_2a,
    Clause.A1_1_1_2b,
    Clause.A1_1_1_2c,
    Clause.A1_1_1_4,
    Clause.A1_1_1_5,
    Clause.A1_1_2,
)
DECLINE_TEXT: Final[dict[Clause, str]] = {
    Clause.A1_1_1_1: "经营主体非企业或未完成淘宝实名认证",
    Clause.A1_1_1_2a: "主体非一般纳税人",
    Clause.A1_1_1_2b: "注册资本不足50万元",
    Clause.A1_1_1_2c: "注册时间未满1年且未提供主体优势说明",
    Clause.A1_1_1_4: "申请账号为店铺账号",
    Clause.A1_1_1_5: "经营主体所在城市与服务城市不一致",
    Clause.A1_1_2: "未同时具备BD拓展、运营、陪跑、培训、投流、货品整合分发能力",
}


def settled() -> dict[str, Any]:
    return {"merchant_fees_settled": True, "transaction_obligations_fulfilled": True}


def random_person(rng: random.Random) -> str:
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2, 2])))
    return rng.choice(SURNAMES) + given


def random_phone(rng: random.Random) -> str:
    return rng.choice(PHONE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))


def random_org_code(rng: random.Random) -> str:
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


def random_uscc(rng: random.Random, city: City) -> str:
    first17 = "91" + city.area + random_org_code(rng)  # 9: market regulator, 1: enterprise
    return first17 + check_character(first17)


def random_company(rng: random.Random, city: City, taken: set[str]) -> str:
    name = ""
    for _ in range(20):
        kind = rng.choice(COMPANY_KINDS).format(trade=city.trade)
        name = city.prefix + rng.choice(BRANDS) + kind
        if name not in taken:
            break
    taken.add(name)
    return name


def random_application(rng: random.Random, city: City, company: str, first: date) -> dict[str, Any]:
    if rng.random() < 0.08:
        registered = first - timedelta(days=rng.randint(90, 330))
        statement: str | None = rng.choice(ADVANTAGES)
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
        "registered_capital_fen": rng.choice(CAPITALS_FEN),
        "registered_on": registered.isoformat(),
        "advantage_statement": statement,
        "is_store_account": False,
        "entity_city": city.name,
        "service_city": city.name,
        "capabilities": capabilities,
        "contact": {"name": random_person(rng), "phone": random_phone(rng)},
    }
